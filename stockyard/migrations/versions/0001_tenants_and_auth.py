"""Roles, tenants, users, token families, refresh tokens, API clients and signing keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

from stockyard.core.settings import APP_ROLE
from stockyard.migrations.rls import enable_tenant_rls, grant_app

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Owns the SECURITY DEFINER look-ups that must see across tenants (sign-in by slug, client id,
# revocation re-seeding). It cannot log in and may read only the columns those look-ups need.
DEFINER_ROLE = "stockyard_definer"


def _create_role(name: str, options: str) -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
                CREATE ROLE {name} {options};
            ELSE
                ALTER ROLE {name} {options};
            END IF;
        END
        $$
        """
    )


def upgrade() -> None:
    _create_role(APP_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT")
    _create_role(DEFINER_ROLE, "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
    op.execute(
        "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO "
        f"{APP_ROLE}', current_database()); END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {DEFINER_ROLE}")
    # Functions are executable by PUBLIC by default; ours are granted one by one.
    op.execute("ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")

    op.execute(
        """
        CREATE TABLE tenant (
            id uuid NOT NULL,
            slug varchar(63) NOT NULL,
            name varchar(200) NOT NULL,
            rate_limit_per_minute integer,
            rate_limit_burst integer,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_tenant PRIMARY KEY (id),
            CONSTRAINT uq_tenant_slug UNIQUE (slug)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE app_user (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            email varchar(320) NOT NULL,
            name varchar(200),
            password_hash text NOT NULL,
            role varchar(16) NOT NULL,
            is_active boolean NOT NULL DEFAULT true,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_app_user PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_app_user_tenant_id_email UNIQUE (tenant_id, email),
            CONSTRAINT fk_app_user_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE,
            CONSTRAINT ck_app_user_role CHECK (role IN ('owner', 'admin', 'member', 'viewer'))
        )
        """
    )
    op.execute("CREATE INDEX ix_app_user_tenant_id_role_id ON app_user (tenant_id, role, id)")
    op.execute(
        """
        CREATE TABLE token_family (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            user_id uuid NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            revoked_reason varchar(64),
            CONSTRAINT pk_token_family PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_token_family_tenant_id_user_id_app_user FOREIGN KEY (tenant_id, user_id)
                REFERENCES app_user (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_token_family_tenant_id_user_id ON token_family (tenant_id, user_id)"
    )
    op.execute(
        "CREATE INDEX ix_token_family_revoked_at ON token_family (revoked_at) "
        "WHERE revoked_at IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE refresh_token (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            family_id uuid NOT NULL,
            parent_id uuid,
            token_hash bytea NOT NULL,
            issued_at timestamptz NOT NULL DEFAULT now(),
            used_at timestamptz,
            revoked_at timestamptz,
            CONSTRAINT pk_refresh_token PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_refresh_token_tenant_id_token_hash UNIQUE (tenant_id, token_hash),
            CONSTRAINT fk_refresh_token_tenant_id_family_id_token_family
                FOREIGN KEY (tenant_id, family_id)
                REFERENCES token_family (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_refresh_token_tenant_id_family_id ON refresh_token (tenant_id, family_id)"
    )
    op.execute(
        """
        CREATE TABLE api_client (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            name varchar(200) NOT NULL,
            secret_hash text NOT NULL,
            scopes text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz,
            CONSTRAINT pk_api_client PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_api_client_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_api_client_tenant_id_created_at_id "
        "ON api_client (tenant_id, created_at, id)"
    )
    op.execute(
        """
        CREATE TABLE signing_key (
            kid varchar(64) NOT NULL,
            public_pem text NOT NULL,
            private_key_encrypted bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            retires_at timestamptz,
            CONSTRAINT pk_signing_key PRIMARY KEY (kid)
        )
        """
    )

    enable_tenant_rls("tenant", column="id")
    for table in ("app_user", "token_family", "refresh_token", "api_client"):
        enable_tenant_rls(table)

    grant_app("tenant", "SELECT, INSERT, UPDATE")
    grant_app("app_user", "SELECT, INSERT, UPDATE")
    grant_app("token_family", "SELECT, INSERT, UPDATE")
    grant_app("refresh_token", "SELECT, INSERT, UPDATE")
    grant_app("api_client", "SELECT, INSERT, UPDATE")
    grant_app("signing_key", "SELECT")

    _create_definer_lookups()


def _create_definer_lookups() -> None:
    """Cross-tenant look-ups that run as stockyard_definer, which sees only the columns named."""
    op.execute(
        f"GRANT SELECT (id, slug, rate_limit_per_minute, rate_limit_burst) ON tenant "
        f"TO {DEFINER_ROLE}"
    )
    op.execute(f"GRANT SELECT (tenant_id, id, revoked_at) ON api_client TO {DEFINER_ROLE}")
    op.execute(f"GRANT SELECT (id, revoked_at) ON token_family TO {DEFINER_ROLE}")
    for table in ("tenant", "api_client", "token_family"):
        op.execute(
            f"CREATE POLICY definer_lookup ON {table} FOR SELECT TO {DEFINER_ROLE} USING (true)"
        )
    functions = {
        "stockyard_tenant_id_for_slug(p_slug text) RETURNS uuid": (
            "SELECT id FROM public.tenant WHERE slug = p_slug"
        ),
        "stockyard_tenant_id_for_client(p_client_id uuid) RETURNS uuid": (
            "SELECT tenant_id FROM public.api_client WHERE id = p_client_id"
        ),
        "stockyard_tenant_rate_limit(p_tenant_id uuid) "
        "RETURNS TABLE (per_minute integer, burst integer)": (
            "SELECT rate_limit_per_minute, rate_limit_burst "
            "FROM public.tenant WHERE id = p_tenant_id"
        ),
        "stockyard_revoked_sessions_since(p_since timestamptz) RETURNS SETOF uuid": (
            "SELECT id FROM public.token_family WHERE revoked_at >= p_since "
            "UNION ALL SELECT id FROM public.api_client WHERE revoked_at >= p_since"
        ),
    }
    for signature, body in functions.items():
        op.execute(
            f"CREATE FUNCTION {signature} LANGUAGE sql STABLE SECURITY DEFINER "
            f"SET search_path = pg_catalog, pg_temp AS $$ {body} $$"
        )
        arguments = signature.split(" RETURNS")[0]
        op.execute(f"ALTER FUNCTION {arguments} OWNER TO {DEFINER_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION {arguments} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {arguments} TO {APP_ROLE}")


def downgrade() -> None:
    for function in (
        "stockyard_tenant_id_for_slug(text)",
        "stockyard_tenant_id_for_client(uuid)",
        "stockyard_tenant_rate_limit(uuid)",
        "stockyard_revoked_sessions_since(timestamptz)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    for table in (
        "signing_key",
        "api_client",
        "refresh_token",
        "token_family",
        "app_user",
        "tenant",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
