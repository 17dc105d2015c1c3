"""SQL helpers the migrations share: row-level security and grants for tenant tables."""

from __future__ import annotations

from alembic import op

from stockyard.core.settings import APP_ROLE

CURRENT_TENANT = "(SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)"


def enable_tenant_rls(table: str, *, column: str = "tenant_id") -> None:
    """Wall a table off by tenant. FORCE makes the policy bind the table owner as well."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} TO PUBLIC "
        f"USING ({column} = {CURRENT_TENANT}) WITH CHECK ({column} = {CURRENT_TENANT})"
    )


def grant_app(table: str, privileges: str) -> None:
    op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")
