"""Webhooks: endpoints a tenant subscribes, and the deliveries of its events to them.

An endpoint keeps its own position in the event feed (`position_txid`, `position_id`): the
dispatcher copies the events past it into `webhook_delivery` and moves it on in one
transaction, so no event is skipped or queued twice, and the write path pays nothing for
webhooks. A delivery is due when `next_attempt_at` has passed; claiming it pushes that time
one lease ahead, so a dispatcher that dies mid-send leaves it due again, never lost.
`webhook_attempt` is the delivery log, one row per try.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

from stockyard.core.settings import APP_ROLE, SUPPORT_ROLE
from stockyard.migrations.rls import (
    DEFINER_ROLE,
    create_definer_lookup,
    enable_tenant_rls,
    grant_app,
)

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("webhook_attempt", "webhook_delivery", "webhook_endpoint")

# What the dispatcher asks across tenants; the definer sees only the columns these read.
LOOKUPS = {
    "stockyard_tenants_with_webhook_endpoints() RETURNS SETOF uuid": (
        "SELECT DISTINCT tenant_id FROM public.webhook_endpoint WHERE enabled"
    ),
    "stockyard_tenants_with_due_webhook_deliveries() RETURNS SETOF uuid": (
        "SELECT DISTINCT d.tenant_id FROM public.webhook_delivery d "
        "WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND EXISTS ("
        "SELECT FROM public.webhook_endpoint e "
        "WHERE e.tenant_id = d.tenant_id AND e.id = d.endpoint_id AND e.enabled)"
    ),
    "stockyard_due_webhook_deliveries() RETURNS bigint": (
        "SELECT count(*) FROM public.webhook_delivery "
        "WHERE state = 'pending' AND next_attempt_at <= now()"
    ),
}


def upgrade() -> None:
    # A UUIDv7 (RFC 9562) minted by PostgreSQL, for the deliveries the dispatcher queues
    # server-side (thousands per batch, never through Python): a random v4 with the
    # millisecond clock laid over its first six bytes and its version bits turned to 7.
    op.execute(
        """
        CREATE FUNCTION stockyard_new_id() RETURNS uuid LANGUAGE sql VOLATILE AS $$
            SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
                substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION stockyard_new_id() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION stockyard_new_id() TO {APP_ROLE}")
    op.execute(
        """
        CREATE TABLE webhook_endpoint (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            url varchar(2048) NOT NULL,
            event_types text[] NOT NULL,
            description varchar(500),
            enabled boolean NOT NULL DEFAULT true,
            disabled_reason varchar(200),
            secret text NOT NULL,
            previous_secret text,
            previous_secret_expires_at timestamptz,
            position_txid xid8 NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot()),
            position_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
            failing_since timestamptz,
            created_by uuid,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_webhook_endpoint PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_webhook_endpoint_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE,
            CONSTRAINT ck_webhook_endpoint_event_types CHECK (cardinality(event_types) >= 1)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE webhook_delivery (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT stockyard_new_id(),
            endpoint_id uuid NOT NULL,
            event_id uuid NOT NULL,
            event_type varchar(64) NOT NULL,
            occurred_at timestamptz NOT NULL,
            data jsonb NOT NULL,
            state varchar(16) NOT NULL DEFAULT 'pending',
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_status integer,
            last_error varchar(200),
            created_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            CONSTRAINT pk_webhook_delivery PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_webhook_delivery_tenant_id_endpoint_id_webhook_endpoint
                FOREIGN KEY (tenant_id, endpoint_id)
                REFERENCES webhook_endpoint (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_webhook_delivery_state
                CHECK (state IN ('pending', 'delivered', 'failed'))
        )
        """
    )
    # Claiming: an endpoint's due deliveries, oldest first.
    op.execute(
        "CREATE INDEX ix_webhook_delivery_tenant_id_endpoint_id_next_attempt_at "
        "ON webhook_delivery (tenant_id, endpoint_id, next_attempt_at) WHERE state = 'pending'"
    )
    # The dispatcher's cross-tenant look-up of which tenants have deliveries due.
    op.execute(
        "CREATE INDEX ix_webhook_delivery_next_attempt_at "
        "ON webhook_delivery (next_attempt_at) WHERE state = 'pending'"
    )
    # The delivery log of an endpoint, newest first; and the deliveries of an event (trace).
    op.execute(
        "CREATE INDEX ix_webhook_delivery_tenant_id_endpoint_id_id "
        "ON webhook_delivery (tenant_id, endpoint_id, id)"
    )
    op.execute(
        "CREATE INDEX ix_webhook_delivery_tenant_id_event_id "
        "ON webhook_delivery (tenant_id, event_id)"
    )
    op.execute(
        """
        CREATE TABLE webhook_attempt (
            tenant_id uuid NOT NULL,
            delivery_id uuid NOT NULL,
            attempt integer NOT NULL,
            attempted_at timestamptz NOT NULL,
            duration_ms integer NOT NULL,
            status_code integer,
            error varchar(200),
            CONSTRAINT pk_webhook_attempt PRIMARY KEY (tenant_id, delivery_id, attempt),
            CONSTRAINT fk_webhook_attempt_tenant_id_delivery_id_webhook_delivery
                FOREIGN KEY (tenant_id, delivery_id)
                REFERENCES webhook_delivery (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    for table in TABLES:
        enable_tenant_rls(table)
    grant_app("webhook_endpoint", "SELECT, INSERT, UPDATE, DELETE")
    grant_app("webhook_delivery", "SELECT, INSERT, UPDATE, DELETE")
    grant_app("webhook_attempt", "SELECT, INSERT, DELETE")

    op.execute(f"GRANT SELECT (tenant_id, id, enabled) ON webhook_endpoint TO {DEFINER_ROLE}")
    op.execute(
        f"GRANT SELECT (tenant_id, endpoint_id, state, next_attempt_at) ON webhook_delivery "
        f"TO {DEFINER_ROLE}"
    )
    for table in ("webhook_endpoint", "webhook_delivery"):
        op.execute(
            f"CREATE POLICY definer_lookup ON {table} FOR SELECT TO {DEFINER_ROLE} USING (true)"
        )
    for signature, body in LOOKUPS.items():
        create_definer_lookup(signature, body)

    # The support trace shows a request's events and their deliveries by id, type and outcome:
    # never an event's data, an endpoint's URL or a delivery's payload.
    op.execute(
        f"GRANT SELECT (tenant_id, id, type, occurred_at, request_id) ON event TO {SUPPORT_ROLE}"
    )
    op.execute(
        f"GRANT SELECT (tenant_id, id, endpoint_id, event_id, state, attempts, last_status, "
        f"created_at, finished_at) ON webhook_delivery TO {SUPPORT_ROLE}"
    )
    for table in ("event", "webhook_delivery"):
        op.execute(
            f"CREATE POLICY support_read ON {table} FOR SELECT TO {SUPPORT_ROLE} USING (true)"
        )


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS support_read ON event")
    op.execute(f"REVOKE SELECT ON event FROM {SUPPORT_ROLE}")
    for signature in LOOKUPS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature.split(' RETURNS')[0]}")
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP FUNCTION IF EXISTS stockyard_new_id()")
