"""Signing keys are published before they sign, and only one key is ever the newest.

`activates_at` is when a key starts signing. `stockyard keys rotate` sets it far enough ahead
that every API worker and every cached JWKS has seen the key first, so no verifier ever meets
a token whose key it does not know. At most one key has no retirement date (the newest): two
concurrent rotations can't leave two of them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE signing_key ADD COLUMN activates_at timestamptz")
    op.execute("UPDATE signing_key SET activates_at = created_at")
    op.execute(
        "ALTER TABLE signing_key ALTER COLUMN activates_at SET NOT NULL, "
        "ALTER COLUMN activates_at SET DEFAULT now()"
    )
    # A past race may have left two keys without a retirement date: keep the newest.
    op.execute(
        """
        UPDATE signing_key SET retires_at = now() + interval '1 day'
        WHERE retires_at IS NULL AND kid <> (
            SELECT kid FROM signing_key WHERE retires_at IS NULL
            ORDER BY created_at DESC, kid DESC LIMIT 1)
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_signing_key_newest ON signing_key ((true)) WHERE retires_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS uq_signing_key_newest")
    op.execute("ALTER TABLE signing_key DROP COLUMN activates_at")
