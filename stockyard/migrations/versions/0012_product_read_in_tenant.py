"""The product read by id scoped in one statement: `stockyard_product_in_tenant` sets the
transaction-local tenant and then reads, so the API's hottest route makes one round trip
where BEGIN, the tenant setting, the read and COMMIT made three.

SECURITY INVOKER: it runs as its caller, the app role, under row-level security like any
other statement of it, and sets only what the app role may set itself. On success it puts
back the setting it found before it returns (on an error, the rollback of the transaction or
savepoint reverts it): called alone, its implicit transaction ends with the statement, tenant
and all; called inside a transaction, it leaves that one's tenant as it was.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from alembic import op

from stockyard.core.settings import APP_ROLE

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SIGNATURE = "stockyard_product_in_tenant(p_tenant uuid, p_id uuid)"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {SIGNATURE} RETURNS SETOF public.product
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER
        SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            prior text := current_setting('app.tenant_id', true);
        BEGIN
            PERFORM set_config('app.tenant_id', p_tenant::text, true);
            -- RETURN QUERY runs the query here, under the tenant just set.
            RETURN QUERY SELECT * FROM public.product WHERE id = p_id;
            PERFORM set_config('app.tenant_id', coalesce(prior, ''), true);
        END
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
