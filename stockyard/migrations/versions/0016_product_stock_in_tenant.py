"""A SKU's stock scoped in one statement: `stockyard_product_stock_in_tenant` sets the
transaction-local tenant and reads one page of that SKU's balances, so the stock route's
usual request (`GET /stock?sku=`) makes one round trip where BEGIN with the tenant setting,
the page and COMMIT made three. Any other filter reads as before.

A function for every stock read was tried and dropped: with its filters optional, its query
was planned for each call's values. This one has no optional filter, only the cursor, so,
like `stockyard_product_movements_in_tenant` (migration 0014), it keeps two static queries
(first page, after a cursor) planned for the connection, each served by the balance's key
(tenant_id, product_id, location_id). SECURITY INVOKER: it runs as the app role under
row-level security and puts back on success the setting it found (an error's rollback
reverts it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from alembic import op

from stockyard.core.settings import APP_ROLE

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SIGNATURE = (
    "stockyard_product_stock_in_tenant("
    "p_tenant uuid, p_sku text, p_after_sku text, p_after_location text, p_limit integer)"
)

# The columns and order of the stock read (inventory/ledger/repository.py `_STOCK`).
_PAGE = """
    SELECT p.sku, l.code, b.on_hand, b.reserved, p.reorder_point, p.id
    FROM public.balance b
    JOIN public.product p ON p.tenant_id = b.tenant_id AND p.id = b.product_id
    JOIN public.location l ON l.tenant_id = b.tenant_id AND l.id = b.location_id
    WHERE p.sku = p_sku
      {after}
    ORDER BY p.sku, l.code
    LIMIT p_limit
"""


def upgrade() -> None:
    first_page = _PAGE.format(after="")
    next_page = _PAGE.format(after="AND (p.sku, l.code) > (p_after_sku, p_after_location)")
    op.execute(
        f"""
        CREATE FUNCTION {SIGNATURE}
        RETURNS TABLE (
            sku varchar(100), location varchar(64), on_hand bigint, reserved bigint,
            reorder_point bigint, product_id uuid
        )
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER
        SET search_path = pg_catalog, pg_temp AS $$
        #variable_conflict use_column
        DECLARE
            prior text := current_setting('app.tenant_id', true);
        BEGIN
            PERFORM set_config('app.tenant_id', p_tenant::text, true);
            -- RETURN QUERY runs the query here, under the tenant just set.
            IF p_after_sku IS NULL THEN
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
