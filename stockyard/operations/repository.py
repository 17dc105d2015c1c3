"""All SQL of tenant export and erasure, walked from the catalog: every table with a
`tenant_id` column (and `tenant` itself) is a tenant table, so a table added later is found
without anyone remembering to list it here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.database import driver_connection, fetch, fetch_one

TENANT_TABLES = """
SELECT c.relname AS name, c.relkind = 'p' AS partitioned,
       CASE WHEN c.relname = 'tenant' THEN 'id' ELSE 'tenant_id' END AS tenant_column,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns,
       ARRAY(SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = c.oid AND i.indisprimary
             ORDER BY array_position(i.indkey, a.attnum)) AS key_columns,
       ARRAY(SELECT DISTINCT f.relname::text FROM pg_constraint k
             JOIN pg_class f ON f.oid = k.confrelid
             WHERE k.conrelid = c.oid AND k.contype = 'f' AND f.oid <> c.oid) AS references,
       ARRAY(SELECT p.relname::text FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid
             WHERE h.inhparent = c.oid ORDER BY p.relname) AS partitions
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND (c.relname = 'tenant' OR EXISTS (
        SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
          AND NOT a.attisdropped))
ORDER BY c.relname
"""


@dataclass(frozen=True, slots=True)
class TenantTable:
    name: str
    partitioned: bool
    tenant_column: str
    columns: list[str]
    key_columns: list[str]
    references: list[str]
    partitions: list[str]


async def tenant_tables(session: AsyncSession) -> list[TenantTable]:
    return [TenantTable(**dict(row)) for row in await fetch(session, TENANT_TABLES)]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def stream_rows_as_json(
    session: AsyncSession, table: TenantTable, columns: list[str], *, batch: int = 1000
) -> AsyncIterator[list[str]]:
    """The table's rows visible in this transaction, in key order, as JSON texts PostgreSQL
    writes itself (uuids, timestamps, arrays and jsonb in their JSON forms), in batches, from
    a cursor: a tenant of millions of movements streams in constant memory. Row-level security
    decides which rows those are."""
    selected = ", ".join(_quoted(column) for column in columns)
    order = ", ".join(_quoted(column) for column in table.key_columns) or "1"
    sql = (
        f"SELECT row_to_json(r)::text FROM (SELECT {selected} FROM {_quoted(table.name)} "
        f"ORDER BY {order}) r"
    )
    connection = await driver_connection(session)
    rows: list[str] = []
    async for record in connection.cursor(sql, prefetch=batch):
        rows.append(record[0])
        if len(rows) >= batch:
            yield rows
            rows = []
    if rows:
        yield rows


async def count_rows_of(
    session: AsyncSession, table: str, column: str, tenant_id: uuid.UUID
) -> int:
    """Rows carrying the tenant's id, counted by the owner across the whole table."""
    row = await fetch_one(
        session,
        f"SELECT count(*) AS n FROM {_quoted(table)} WHERE {_quoted(column)} = :tenant_id",
        {"tenant_id": tenant_id},
    )
    return int(row["n"]) if row is not None else 0


async def delete_rows_of(
    session: AsyncSession, table: str, column: str, tenant_id: uuid.UUID
) -> int:
    connection = await driver_connection(session)
    status = await connection.execute(
        f"DELETE FROM {_quoted(table)} WHERE {_quoted(column)} = $1", tenant_id
    )
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class TenantState:
    id: uuid.UUID
    deleted_at: datetime | None


async def tenant_by_slug(session: AsyncSession, slug: str) -> TenantState | None:
    row = await fetch_one(
        session, "SELECT id, deleted_at FROM stockyard_tenant_by_slug(:slug)", {"slug": slug}
    )
    return None if row is None else TenantState(row["id"], row["deleted_at"])


async def lock_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Taken first by a deletion: a sign-in that share-locks the row either commits before
    (and its session is revoked with the others) or waits and sees the tenant deleted."""
    await fetch(
        session, "SELECT id FROM tenant WHERE id = :tenant_id FOR UPDATE", {"tenant_id": tenant_id}
    )


async def disable_webhooks(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """A deleted tenant's data stops leaving: its endpoints get no more deliveries."""
    await fetch(
        session,
        "UPDATE webhook_endpoint SET enabled = false, disabled_reason = 'tenant_deleted' "
        "WHERE tenant_id = :tenant_id AND enabled",
        {"tenant_id": tenant_id},
    )


async def mark_deleted(session: AsyncSession, tenant_id: uuid.UUID, grace_seconds: int) -> None:
    await fetch(
        session,
        "UPDATE tenant SET deleted_at = coalesce(deleted_at, now()), "
        "erase_after = now() + make_interval(secs => :grace) WHERE id = :tenant_id",
        {"tenant_id": tenant_id, "grace": float(grace_seconds)},
    )


async def revoke_clients(session: AsyncSession, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await fetch(
        session,
        "UPDATE api_client SET revoked_at = now() "
        "WHERE tenant_id = :tenant_id AND revoked_at IS NULL RETURNING id",
        {"tenant_id": tenant_id},
    )
    return [row["id"] for row in rows]


async def tenants_due_for_erasure(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    rows = await fetch(session, "SELECT id, slug FROM stockyard_tenants_due_for_erasure()")
    return [(row["id"], row["slug"]) for row in rows]
