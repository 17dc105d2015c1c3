"""Access tokens can be revoked one by one (RFC 7009), not only with their whole session.

A revoked access token's `jti` is kept until the token would have expired anyway. Redis holds
the same fact beside the session's limiter bucket (one hash tag, the same EVALSHA), and a
definer look-up lets the revocation re-seed find them across tenants after a Redis outage.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from alembic import op

from stockyard.core.settings import APP_ROLE
from stockyard.migrations.rls import enable_tenant_rls, grant_app

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DEFINER_ROLE = "stockyard_definer"
RESEED = "stockyard_revoked_access_tokens_since(timestamptz)"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE revoked_access_token (
            tenant_id uuid NOT NULL,
            jti text NOT NULL,
            session_id uuid NOT NULL,
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_revoked_access_token PRIMARY KEY (tenant_id, jti),
            CONSTRAINT fk_revoked_access_token_tenant_id_tenant
                FOREIGN KEY (tenant_id) REFERENCES tenant (id) ON DELETE CASCADE,
            CONSTRAINT ck_revoked_access_token_jti CHECK (length(jti) <= 64)
        )
        """
    )
    enable_tenant_rls("revoked_access_token")
    grant_app("revoked_access_token", "SELECT, INSERT, DELETE")
    op.execute(
        f"GRANT SELECT (session_id, jti, expires_at, revoked_at) ON revoked_access_token "
        f"TO {DEFINER_ROLE}"
    )
    op.execute(
        f"CREATE POLICY definer_lookup ON revoked_access_token FOR SELECT TO {DEFINER_ROLE} "
        "USING (true)"
    )
    op.execute(
        "CREATE FUNCTION stockyard_revoked_access_tokens_since(p_since timestamptz) "
        "RETURNS TABLE (session_id uuid, jti text, expires_at timestamptz) "
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ "
        "SELECT session_id, jti, expires_at FROM public.revoked_access_token "
        "WHERE revoked_at >= p_since AND expires_at > now() $$"
    )
    op.execute(f"ALTER FUNCTION {RESEED} OWNER TO {DEFINER_ROLE}")
    op.execute(f"REVOKE ALL ON FUNCTION {RESEED} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {RESEED} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {RESEED}")
    op.execute("DROP TABLE IF EXISTS revoked_access_token")
