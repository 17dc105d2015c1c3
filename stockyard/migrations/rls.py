"""SQL helpers the migrations share: row-level security and grants for tenant tables."""

from __future__ import annotations

from alembic import op

from stockyard.core.settings import APP_ROLE
from stockyard.core.tenancy import CURRENT_TENANT, tenant_policy_statements

DEFINER_ROLE = "stockyard_definer"

__all__ = [
    "CURRENT_TENANT",
    "DEFINER_ROLE",
    "create_definer_lookup",
    "enable_tenant_rls",
    "grant_app",
]


def enable_tenant_rls(table: str, *, column: str = "tenant_id") -> None:
    """Wall a table off by tenant. FORCE makes the policy bind the table owner as well."""
    for statement in tenant_policy_statements(table, column=column):
        op.execute(statement)


def grant_app(table: str, privileges: str) -> None:
    op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")


def create_definer_lookup(signature: str, body: str) -> None:
    """A cross-tenant look-up the app role may call and nothing else: SECURITY DEFINER, owned
    by the definer role (which sees only the columns granted to it), with a fixed search path
    so no caller's schema can stand in for ours. `signature` is `name(args) RETURNS type`."""
    arguments = signature.split(" RETURNS")[0]
    op.execute(
        f"CREATE FUNCTION {signature} LANGUAGE sql STABLE SECURITY DEFINER "
        f"SET search_path = pg_catalog, pg_temp AS $$ {body} $$"
    )
    op.execute(f"ALTER FUNCTION {arguments} OWNER TO {DEFINER_ROLE}")
    op.execute(f"REVOKE ALL ON FUNCTION {arguments} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {arguments} TO {APP_ROLE}")
