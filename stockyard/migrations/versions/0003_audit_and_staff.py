"""Audit events (partitioned by month), platform staff, and the support role.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

from stockyard.core.settings import APP_ROLE, SUPPORT_ROLE
from stockyard.migrations.rls import CURRENT_TENANT, grant_app

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DEFINER_ROLE = "stockyard_definer"
# Events of no tenant (a support engineer's own lookups) are filed under this id.
PLATFORM_TENANT = "00000000-0000-0000-0000-000000000000"


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SUPPORT_ROLE}') THEN
                CREATE ROLE {SUPPORT_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END
        $$
        """
    )
    # The API becomes the support role only with SET LOCAL ROLE, inside one transaction;
    # NOINHERIT on stockyard_app means the membership grants nothing by itself.
    op.execute(f"GRANT {SUPPORT_ROLE} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {SUPPORT_ROLE}")

    op.execute(
        """
        CREATE TABLE audit_event (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            request_id varchar(128),
            actor_type varchar(16) NOT NULL,
            actor_id uuid,
            action varchar(100) NOT NULL,
            resource_type varchar(50),
            resource_id varchar(100),
            status integer,
            details jsonb,
            CONSTRAINT pk_audit_event PRIMARY KEY (tenant_id, occurred_at, id),
            CONSTRAINT ck_audit_event_actor_type
                CHECK (actor_type IN ('user', 'client', 'staff', 'system'))
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute(
        "CREATE INDEX ix_audit_event_tenant_id_request_id ON audit_event (tenant_id, request_id)"
    )
    op.execute(
        "CREATE INDEX ix_audit_event_tenant_id_actor_id_occurred_at "
        "ON audit_event (tenant_id, actor_id, occurred_at)"
    )
    # The support trace looks a request up across tenants.
    op.execute("CREATE INDEX ix_audit_event_request_id ON audit_event (request_id)")
    op.execute("CREATE TABLE audit_event_default PARTITION OF audit_event DEFAULT")

    for table in ("audit_event", "audit_event_default"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO PUBLIC "
            f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
        op.execute(
            f"CREATE POLICY support_read ON {table} FOR SELECT TO {SUPPORT_ROLE} USING (true)"
        )
        op.execute(
            f"CREATE POLICY support_own_events ON {table} FOR INSERT TO {SUPPORT_ROLE} "
            f"WITH CHECK (tenant_id = '{PLATFORM_TENANT}' AND actor_type = 'staff')"
        )
    grant_app("audit_event", "SELECT, INSERT")
    op.execute(f"GRANT SELECT, INSERT ON audit_event TO {SUPPORT_ROLE}")
    op.execute(f"GRANT SELECT (id, slug) ON tenant TO {SUPPORT_ROLE}")
    op.execute(f"CREATE POLICY support_read ON tenant FOR SELECT TO {SUPPORT_ROLE} USING (true)")

    op.execute(
        """
        CREATE TABLE staff_user (
            id uuid NOT NULL,
            email varchar(320) NOT NULL,
            password_hash text NOT NULL,
            role varchar(16) NOT NULL,
            is_active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_staff_user PRIMARY KEY (id),
            CONSTRAINT uq_staff_user_email UNIQUE (email),
            CONSTRAINT ck_staff_user_role CHECK (role IN ('support'))
        )
        """
    )
    # Not even the support role reads staff rows: sign-in goes through a definer look-up.
    op.execute(
        f"GRANT SELECT (id, email, password_hash, role, is_active) ON staff_user TO {DEFINER_ROLE}"
    )
    for signature, body in {
        "stockyard_staff_for_login(p_email text) "
        "RETURNS TABLE (id uuid, password_hash text, role varchar, is_active boolean)": (
            "SELECT id, password_hash, role, is_active FROM public.staff_user WHERE email = p_email"
        ),
        "stockyard_staff_is_active(p_id uuid) RETURNS boolean": (
            "SELECT coalesce((SELECT is_active FROM public.staff_user WHERE id = p_id), false)"
        ),
    }.items():
        arguments = signature.split(" RETURNS")[0]
        op.execute(
            f"CREATE FUNCTION {signature} LANGUAGE sql STABLE SECURITY DEFINER "
            f"SET search_path = pg_catalog, pg_temp AS $$ {body} $$"
        )
        op.execute(f"ALTER FUNCTION {arguments} OWNER TO {DEFINER_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION {arguments} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {arguments} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS stockyard_staff_for_login(text)")
    op.execute("DROP FUNCTION IF EXISTS stockyard_staff_is_active(uuid)")
    op.execute("DROP TABLE IF EXISTS staff_user")
    op.execute("DROP POLICY IF EXISTS support_read ON tenant")
    op.execute("DROP TABLE IF EXISTS audit_event")
