"""`stockyard_instant_text(timestamptz)`: an instant as the API writes it in JSON, so a page
the database renders (core/rendering.py) reads exactly as one the API's models serialize.

The API's models write an instant in UTC with a `Z`, and six fractional digits only when the
microseconds are not zero (`2026-01-31T09:30:00Z`, `2026-01-31T09:30:00.120000Z`). A plain
SQL function of built-ins, one expression with no FROM, so the planner inlines it into the
statement that calls it; STABLE as `to_char` is (its result depends on the instant alone:
the zone is fixed, never the session's, and these format fields ignore the locale).

-infinity and infinity read as the first and last instants of years 1 to 9999: asyncpg
stored `0001-01-01T00:00:00Z` and `9999-12-31T23:59:59.999999Z` so before the API refused them
(core/timestamps.py `StoredInstant`), and those are what the client sent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from alembic import op

from stockyard.core.settings import APP_ROLE

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SIGNATURE = "stockyard_instant_text(moment timestamptz)"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {SIGNATURE} RETURNS text
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE
                WHEN moment = '-infinity' THEN '0001-01-01T00:00:00Z'
                WHEN moment = 'infinity' THEN '9999-12-31T23:59:59.999999Z'
                ELSE pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                    || CASE pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'US')
                           WHEN '000000' THEN ''
                           ELSE '.' || pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'US')
                       END
                    || 'Z'
            END
        $$
        """
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
