"""SQL helpers the migrations share: row-level security and grants for tenant tables."""

from __future__ import annotations

from alembic import op

from stockyard.core.settings import APP_ROLE
from stockyard.core.tenancy import CURRENT_TENANT, tenant_policy_statements

__all__ = ["CURRENT_TENANT", "enable_tenant_rls", "grant_app"]


def enable_tenant_rls(table: str, *, column: str = "tenant_id") -> None:
    """Wall a table off by tenant. FORCE makes the policy bind the table owner as well."""
    for statement in tenant_policy_statements(table, column=column):
        op.execute(statement)


def grant_app(table: str, privileges: str) -> None:
    op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")
