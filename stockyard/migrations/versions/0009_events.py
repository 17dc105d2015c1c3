"""Events: every change of stock, reservations and the catalogue, written by the transaction
that made it, readable as a feed.

`txid` is the writing transaction's id. The feed is ordered by (txid, id) and shows only
events of transactions older than the reader's snapshot horizon, so a transaction that
commits late can never slip in behind a position a reader has already passed. Partitioned
by month like the audit trail, so retention drops whole partitions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

from stockyard.migrations.rls import enable_tenant_rls, grant_app

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE event (
            tenant_id uuid NOT NULL,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            id uuid NOT NULL,
            txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            type varchar(64) NOT NULL,
            data jsonb NOT NULL,
            request_id varchar(128),
            CONSTRAINT pk_event PRIMARY KEY (tenant_id, occurred_at, id)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute("CREATE INDEX ix_event_tenant_id_txid_id ON event (tenant_id, txid, id)")
    op.execute("CREATE TABLE event_default PARTITION OF event DEFAULT")
    for table in ("event", "event_default"):
        enable_tenant_rls(table)
    grant_app("event", "SELECT, INSERT")


def downgrade() -> None:
    op.execute("DROP TABLE event")
