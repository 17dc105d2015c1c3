"""Citus's rules for distributing tables by `tenant_id`, enforced on today's schema, so the
step to a Citus cluster (docs/scaling.md) stays a configuration change, not a redesign.

A distributed table's primary key and unique constraints must include the distribution
column; a foreign key between distributed tables must include it on both sides (the tables
are then co-located and the key is checked on one node); a sequence-backed id would be minted
by the coordinator for every row. The tables that are not distributed are listed here, and
only here, with what they become."""

from __future__ import annotations

import asyncpg

# Not distributed by tenant_id, and why (docs/scaling.md, "Citus").
REFERENCE_TABLES = {
    # Replicated to every node: small, read on every request, and unique across tenants
    # (a tenant's slug must be unique platform-wide).
    "tenant": "reference",
    "signing_key": "reference",
    "staff_user": "reference",
}
LOCAL_TABLES = {"alembic_version": "coordinator only: migration bookkeeping"}

_TABLES = """
SELECT c.relname,
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
               AND NOT a.attisdropped) AS has_tenant_id
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""

_UNIQUE_INDEXES = """
SELECT c.relname AS table_name, i.relname AS index_name,
       ARRAY(SELECT a.attname FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum = ANY(x.indkey))::text[] AS columns
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND x.indisunique AND NOT c.relispartition
"""

_FOREIGN_KEYS = """
SELECT con.conname, c.relname AS table_name, r.relname AS referenced,
       -- In key order, so the two sides pair up column by column.
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS referenced_columns
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_class r ON r.oid = con.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND con.contype = 'f' AND NOT c.relispartition
"""

_SEQUENCE_IDS = """
SELECT c.relname, a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT a.attisdropped
  AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')
"""


async def _distributed(owner_db: asyncpg.Connection) -> set[str]:
    rows = await owner_db.fetch(_TABLES)
    tables = {row["relname"]: row["has_tenant_id"] for row in rows}
    undeclared = {
        name
        for name, has_tenant_id in tables.items()
        if not has_tenant_id and name not in REFERENCE_TABLES and name not in LOCAL_TABLES
    }
    assert undeclared == set(), "a table without tenant_id must be declared reference or local"
    return {name for name, has_tenant_id in tables.items() if has_tenant_id}


async def test_every_unique_key_of_a_distributed_table_includes_tenant_id(
    owner_db: asyncpg.Connection,
) -> None:
    distributed = await _distributed(owner_db)
    assert {"product", "movement", "event", "webhook_delivery"} <= distributed
    offenders = [
        (row["table_name"], row["index_name"])
        for row in await owner_db.fetch(_UNIQUE_INDEXES)
        if row["table_name"] in distributed and "tenant_id" not in row["columns"]
    ]
    assert offenders == []


async def test_every_foreign_key_between_distributed_tables_carries_tenant_id(
    owner_db: asyncpg.Connection,
) -> None:
    distributed = await _distributed(owner_db)
    checked = 0
    for row in await owner_db.fetch(_FOREIGN_KEYS):
        if row["table_name"] not in distributed:
            continue
        if row["referenced"] in REFERENCE_TABLES:
            continue  # a distributed table may reference a reference table by any key
        checked += 1
        assert row["referenced"] in distributed, row["conname"]
        # Co-located: the tenant column on both sides, matched to each other.
        pairs = dict(zip(row["columns"], row["referenced_columns"], strict=True))
        assert pairs.get("tenant_id") == "tenant_id", row["conname"]
    assert checked >= 5  # balance, movement, reservation, token_family, webhook_*, ...


async def test_no_tenant_table_takes_its_ids_from_a_sequence(
    owner_db: asyncpg.Connection,
) -> None:
    distributed = await _distributed(owner_db)
    offenders = [
        (row["relname"], row["attname"])
        for row in await owner_db.fetch(_SEQUENCE_IDS)
        if row["relname"] in distributed
    ]
    assert offenders == []
