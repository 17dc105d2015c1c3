"""Support engineers read an audit event's shape, never its business values.

An audit event's `details` can hold what a request changed (a SKU, a quantity, a location);
the tenant's own audit log shows them, staff must not. The support role keeps SELECT on
every other column (kind, outcome, status, route, times, ids, tenant), so a trace still
answers "what happened to this request" while a query for `details` is refused outright.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

from stockyard.core.settings import SUPPORT_ROLE

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TRACEABLE_COLUMNS = (
    "tenant_id, id, occurred_at, request_id, actor_type, actor_id, action, "
    "resource_type, resource_id, status"
)


def upgrade() -> None:
    op.execute(f"REVOKE SELECT ON audit_event FROM {SUPPORT_ROLE}")
    op.execute(f"GRANT SELECT ({TRACEABLE_COLUMNS}) ON audit_event TO {SUPPORT_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ({TRACEABLE_COLUMNS}) ON audit_event FROM {SUPPORT_ROLE}")
    op.execute(f"GRANT SELECT ON audit_event TO {SUPPORT_ROLE}")
