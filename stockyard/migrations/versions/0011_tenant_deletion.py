"""Tenant deletion: a tenant marked deleted can no longer be signed in to (its slug and its
API clients stop resolving at once), and is erased after its grace period
(`stockyard tenants delete`, `stockyard tenants purge`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from stockyard.migrations.rls import DEFINER_ROLE, create_definer_lookup

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_LOOKUPS = {
    "stockyard_tenant_id_for_slug(p_slug text) RETURNS uuid": (
        "SELECT id FROM public.tenant WHERE slug = p_slug AND deleted_at IS NULL",
        "SELECT id FROM public.tenant WHERE slug = p_slug",
    ),
    "stockyard_tenant_id_for_client(p_client_id uuid) RETURNS uuid": (
        "SELECT c.tenant_id FROM public.api_client c JOIN public.tenant t ON t.id = c.tenant_id "
        "WHERE c.id = p_client_id AND t.deleted_at IS NULL",
        "SELECT tenant_id FROM public.api_client WHERE id = p_client_id",
    ),
}


def _replace_lookups(version: int) -> None:
    for signature, bodies in _LOOKUPS.items():
        op.execute(f"DROP FUNCTION {signature.split(' RETURNS')[0]}")
        create_definer_lookup(signature, bodies[version])


def upgrade() -> None:
    op.add_column("tenant", sa.Column("deleted_at", sa.DateTime(timezone=True)))
    op.add_column("tenant", sa.Column("erase_after", sa.DateTime(timezone=True)))
    op.execute(f"GRANT SELECT (deleted_at, erase_after) ON tenant TO {DEFINER_ROLE}")
    _replace_lookups(0)
    # The operator's look-up of a tenant by slug, deleted or not (export during the grace
    # period, a second `tenants delete`).
    create_definer_lookup(
        "stockyard_tenant_by_slug(p_slug text) RETURNS TABLE (id uuid, deleted_at timestamptz)",
        "SELECT id, deleted_at FROM public.tenant WHERE slug = p_slug",
    )
    # The purge's own look-up across tenants: which deleted tenants' grace has passed.
    create_definer_lookup(
        "stockyard_tenants_due_for_erasure() RETURNS TABLE (id uuid, slug text)",
        "SELECT id, slug FROM public.tenant WHERE deleted_at IS NOT NULL "
        "AND erase_after <= now() ORDER BY erase_after",
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION stockyard_tenants_due_for_erasure()")
    op.execute("DROP FUNCTION stockyard_tenant_by_slug(text)")
    _replace_lookups(1)
    op.execute(f"REVOKE SELECT (deleted_at, erase_after) ON tenant FROM {DEFINER_ROLE}")
    op.drop_column("tenant", "erase_after")
    op.drop_column("tenant", "deleted_at")
