"""Inventory: products, locations, the movement ledger, balances, reservations, idempotency.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

from stockyard.core.settings import APP_ROLE
from stockyard.migrations.rls import enable_tenant_rls, grant_app

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DEFINER_ROLE = "stockyard_definer"
TABLES = ("idempotency_key", "reservation", "balance", "movement", "location", "product")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE product (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            sku varchar(100) NOT NULL,
            name varchar(200) NOT NULL,
            description text,
            unit varchar(20) NOT NULL DEFAULT 'pcs',
            reorder_point bigint,
            archived_at timestamptz,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_product PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_product_tenant_id_sku UNIQUE (tenant_id, sku),
            CONSTRAINT fk_product_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE,
            CONSTRAINT ck_product_reorder_point CHECK (reorder_point IS NULL OR reorder_point >= 0)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_product_tenant_id_sku_prefix ON product (tenant_id, sku text_pattern_ops)"
    )
    op.execute(
        "CREATE INDEX ix_product_tenant_id_name_prefix "
        "ON product (tenant_id, lower(name) text_pattern_ops)"
    )
    op.execute(
        """
        CREATE TABLE location (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            code varchar(64) NOT NULL,
            name varchar(200) NOT NULL,
            archived_at timestamptz,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_location PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_location_tenant_id_code UNIQUE (tenant_id, code),
            CONSTRAINT fk_location_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        """
        CREATE TABLE movement (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            product_id uuid NOT NULL,
            location_id uuid NOT NULL,
            delta bigint NOT NULL,
            kind varchar(24) NOT NULL,
            reason text,
            reference text,
            occurred_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            request_id varchar(128),
            actor_id uuid,
            transfer_id uuid,
            CONSTRAINT pk_movement PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_movement_tenant_id_product_id_product FOREIGN KEY (tenant_id, product_id)
                REFERENCES product (tenant_id, id),
            CONSTRAINT fk_movement_tenant_id_location_id_location
                FOREIGN KEY (tenant_id, location_id) REFERENCES location (tenant_id, id),
            CONSTRAINT ck_movement_kind CHECK (kind IN ('receipt', 'issue', 'adjustment',
                'transfer_out', 'transfer_in', 'reservation_commit')),
            CONSTRAINT ck_movement_delta CHECK (delta <> 0)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_movement_tenant_id_product_id_occurred_at_id "
        "ON movement (tenant_id, product_id, occurred_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_movement_tenant_id_occurred_at_id ON movement (tenant_id, occurred_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_movement_tenant_id_location_id_occurred_at_id "
        "ON movement (tenant_id, location_id, occurred_at, id)"
    )
    op.execute(
        """
        CREATE TABLE balance (
            tenant_id uuid NOT NULL,
            product_id uuid NOT NULL,
            location_id uuid NOT NULL,
            on_hand bigint NOT NULL DEFAULT 0,
            reserved bigint NOT NULL DEFAULT 0,
            version integer NOT NULL DEFAULT 1,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_balance PRIMARY KEY (tenant_id, product_id, location_id),
            CONSTRAINT fk_balance_tenant_id_product_id_product FOREIGN KEY (tenant_id, product_id)
                REFERENCES product (tenant_id, id),
            CONSTRAINT fk_balance_tenant_id_location_id_location
                FOREIGN KEY (tenant_id, location_id) REFERENCES location (tenant_id, id),
            CONSTRAINT ck_balance_covered CHECK (reserved >= 0 AND on_hand >= reserved)
        )
        """
    )
    op.execute("CREATE INDEX ix_balance_tenant_id_location_id ON balance (tenant_id, location_id)")
    op.execute(
        """
        CREATE TABLE reservation (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            product_id uuid NOT NULL,
            location_id uuid NOT NULL,
            quantity bigint NOT NULL,
            status varchar(16) NOT NULL DEFAULT 'active',
            expires_at timestamptz NOT NULL,
            reference text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_reservation PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_reservation_tenant_id_product_id_location_id_balance
                FOREIGN KEY (tenant_id, product_id, location_id)
                REFERENCES balance (tenant_id, product_id, location_id),
            CONSTRAINT ck_reservation_quantity CHECK (quantity > 0),
            CONSTRAINT ck_reservation_status
                CHECK (status IN ('active', 'committed', 'released', 'expired'))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_reservation_tenant_id_product_id_location_id "
        "ON reservation (tenant_id, product_id, location_id) WHERE status = 'active'"
    )
    op.execute(
        "CREATE INDEX ix_reservation_tenant_id_created_at_id "
        "ON reservation (tenant_id, created_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_reservation_expires_at ON reservation (expires_at) WHERE status = 'active'"
    )
    op.execute(
        """
        CREATE TABLE idempotency_key (
            tenant_id uuid NOT NULL,
            key varchar(255) NOT NULL,
            request_hash bytea NOT NULL,
            status_code integer,
            response_body jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            CONSTRAINT pk_idempotency_key PRIMARY KEY (tenant_id, key),
            CONSTRAINT fk_idempotency_key_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE
        )
        """
    )

    for table in TABLES:
        enable_tenant_rls(table)
    grant_app("product", "SELECT, INSERT, UPDATE")
    grant_app("location", "SELECT, INSERT, UPDATE")
    # The ledger is append-only: no UPDATE, no DELETE, for anyone the API connects as.
    grant_app("movement", "SELECT, INSERT")
    grant_app("balance", "SELECT, INSERT, UPDATE")
    grant_app("reservation", "SELECT, INSERT, UPDATE")
    grant_app("idempotency_key", "SELECT, INSERT, UPDATE, DELETE")

    # The expiry sweep finds which tenants have reservations to expire, then expires them
    # tenant by tenant as the app role; the definer sees only these three columns.
    op.execute(f"GRANT SELECT (tenant_id, status, expires_at) ON reservation TO {DEFINER_ROLE}")
    op.execute(
        f"CREATE POLICY definer_lookup ON reservation FOR SELECT TO {DEFINER_ROLE} USING (true)"
    )
    op.execute(f"GRANT SELECT (tenant_id, expires_at) ON idempotency_key TO {DEFINER_ROLE}")
    op.execute(
        f"CREATE POLICY definer_lookup ON idempotency_key FOR SELECT TO {DEFINER_ROLE} USING (true)"
    )
    for signature, body in {
        "stockyard_tenants_with_expired_reservations() RETURNS SETOF uuid": (
            "SELECT DISTINCT tenant_id FROM public.reservation "
            "WHERE status = 'active' AND expires_at <= now()"
        ),
        "stockyard_tenants_with_expired_idempotency_keys() RETURNS SETOF uuid": (
            "SELECT DISTINCT tenant_id FROM public.idempotency_key WHERE expires_at <= now()"
        ),
        "stockyard_tenant_ids() RETURNS SETOF uuid": "SELECT id FROM public.tenant",
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
    op.execute("DROP FUNCTION IF EXISTS stockyard_tenants_with_expired_reservations()")
    op.execute("DROP FUNCTION IF EXISTS stockyard_tenants_with_expired_idempotency_keys()")
    op.execute("DROP FUNCTION IF EXISTS stockyard_tenant_ids()")
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
