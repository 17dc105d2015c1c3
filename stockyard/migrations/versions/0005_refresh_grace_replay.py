"""A refreshed token remembers, sealed, the pair its refresh returned.

Inside the refresh-reuse grace window a client that refreshed twice at once (two tabs, a retry
after a lost response) gets the same new pair both times, so whichever response it keeps stays
valid. The pair is encrypted with a key derived from STOCKYARD_SECRET_KEY (a database dump alone
yields no usable token), and replayed only while the token after it is still unused.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE refresh_token ADD COLUMN successor_sealed bytea")


def downgrade() -> None:
    op.execute("ALTER TABLE refresh_token DROP COLUMN successor_sealed")
