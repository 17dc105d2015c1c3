"""`stockyard_instant_text` in one `to_char` call: the instant with six fractional digits and
its `Z`, then `.000000Z` written as `Z` (the API's models omit a zero fraction). The same
text as 0013's three `to_char` calls, at ~60 % of the CPU: a rendered history page of 100
movements formats 200 instants.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SIGNATURE = "stockyard_instant_text(moment timestamptz)"

_INFINITIES = """
    WHEN moment = '-infinity' THEN '0001-01-01T00:00:00Z'
    WHEN moment = 'infinity' THEN '9999-12-31T23:59:59.999999Z'
"""

_ONE_CALL = """
    ELSE pg_catalog.replace(
        pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        '.000000Z', 'Z')
"""

# 0013's body, which downgrade puts back.
_THREE_CALLS = """
    ELSE pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'US')
               WHEN '000000' THEN ''
               ELSE '.' || pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'US')
           END
        || 'Z'
"""


def _define(otherwise: str) -> None:
    # CREATE OR REPLACE keeps the function's grants (EXECUTE to the app role, 0013).
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {SIGNATURE} RETURNS text
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE {_INFINITIES} {otherwise} END
        $$
        """
    )


def upgrade() -> None:
    _define(_ONE_CALL)


def downgrade() -> None:
    _define(_THREE_CALLS)
