"""A product's movement history scoped in one statement: `stockyard_product_movements_in_tenant`
sets the transaction-local tenant and reads one page of a SKU's movements, so the history
route's usual request (a SKU's movements, page after page) makes one round trip where BEGIN
with the tenant setting, the page and COMMIT made three. Any other filter reads as before.

Like `stockyard_product_in_tenant` (migration 0012): SECURITY INVOKER, so it runs as the app
role under row-level security and sets only what that role may set; on success it puts back
the setting it found (on an error, the rollback reverts it). PL/pgSQL keeps each query's plan
for the connection, so a call is not planned afresh; the first page and the pages after a
cursor are two queries, each served in order by the (tenant_id, product_id, occurred_at, id)
index (one query with an optional cursor would filter the skipped rows instead).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from alembic import op

from stockyard.core.settings import APP_ROLE

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SIGNATURE = (
    "stockyard_product_movements_in_tenant("
    "p_tenant uuid, p_sku text, p_after_at timestamptz, p_after_id uuid, p_limit integer)"
)

_PAGE = """
    SELECT m.id, p.sku, l.code, m.product_id, m.location_id, m.delta, m.kind, m.reason,
           m.reference, m.occurred_at, m.recorded_at, m.request_id, m.actor_id, m.transfer_id
    FROM public.movement m
    JOIN public.product p ON p.tenant_id = m.tenant_id AND p.id = m.product_id
    JOIN public.location l ON l.tenant_id = m.tenant_id AND l.id = m.location_id
    WHERE m.product_id = (SELECT named.id FROM public.product named WHERE named.sku = p_sku)
      {after}
    ORDER BY m.occurred_at, m.id
    LIMIT p_limit
"""


def upgrade() -> None:
    first_page = _PAGE.format(after="")
    next_page = _PAGE.format(after="AND (m.occurred_at, m.id) > (p_after_at, p_after_id)")
    op.execute(
        f"""
        CREATE FUNCTION {SIGNATURE}
        RETURNS TABLE (
            id uuid, sku varchar(100), location varchar(64), product_id uuid,
            location_id uuid, delta bigint, kind varchar(24), reason text, reference text,
            occurred_at timestamptz, recorded_at timestamptz, request_id varchar(128),
            actor_id uuid, transfer_id uuid
        )
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER
        SET search_path = pg_catalog, pg_temp AS $$
        #variable_conflict use_column
        DECLARE
            prior text := current_setting('app.tenant_id', true);
        BEGIN
            PERFORM set_config('app.tenant_id', p_tenant::text, true);
            -- RETURN QUERY runs the query here, under the tenant just set.
            IF p_after_at IS NULL THEN
                RETURN QUERY {first_page};
            ELSE
                RETURN QUERY {next_page};
            END IF;
            PERFORM set_config('app.tenant_id', coalesce(prior, ''), true);
        END
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
