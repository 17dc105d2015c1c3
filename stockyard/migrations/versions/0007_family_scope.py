"""A sign-in remembers the scope it was granted, so its refreshes can narrow it but never widen.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for sessions from before: they were granted everything their role carries.
    op.execute("ALTER TABLE token_family ADD COLUMN scopes text[]")


def downgrade() -> None:
    op.execute("ALTER TABLE token_family DROP COLUMN scopes")
