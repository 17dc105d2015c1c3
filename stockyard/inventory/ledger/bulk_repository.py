"""Bulk ingest: COPY into a staging table, then one set-based apply.

Row-by-row ORM inserts cost a round trip (and a balance statement) per movement; here the
whole batch crosses the wire once via COPY, and each balance is locked and updated once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.database import driver_connection
from stockyard.inventory.ledger import repository as ledger_repository

StagedMovement = tuple[int, uuid.UUID, str, str, str, int, str | None, str | None, datetime | None]

_STAGE_COLUMNS = [
    "idx",
    "id",
    "sku",
    "location",
    "kind",
    "delta",
    "reason",
    "reference",
    "occurred_at",
]


@dataclass(frozen=True, slots=True)
class ItemProblem:
    index: int
    reason: str


async def stage(session: AsyncSession, rows: Sequence[StagedMovement]) -> list[ItemProblem]:
    """Copy the batch in and resolve SKUs and location codes; return the items that name
    something this tenant does not have (or has archived)."""
    db = await driver_connection(session)
    await db.execute(
        """
        CREATE TEMP TABLE movement_stage (
            idx integer, id uuid, sku text, location text, kind text, delta bigint,
            reason text, reference text, occurred_at timestamptz
        ) ON COMMIT DROP
        """
    )
    await db.copy_records_to_table("movement_stage", records=rows, columns=_STAGE_COLUMNS)
    problems = await db.fetch(
        """
        SELECT s.idx,
               CASE WHEN p.id IS NULL THEN 'unknown sku'
                    WHEN l.id IS NULL THEN 'unknown location'
                    WHEN p.archived_at IS NOT NULL THEN 'archived product'
                    ELSE 'archived location' END AS reason
        FROM movement_stage s
        LEFT JOIN product p ON p.sku = s.sku
        LEFT JOIN location l ON l.code = s.location
        WHERE p.id IS NULL OR l.id IS NULL OR p.archived_at IS NOT NULL
           OR l.archived_at IS NOT NULL
        ORDER BY s.idx
        LIMIT 1000
        """
    )
    if problems:
        return [ItemProblem(row["idx"], row["reason"]) for row in problems]
    await db.execute(
        """
        CREATE TEMP TABLE movement_resolved ON COMMIT DROP AS
        SELECT s.*, p.id AS product_id, l.id AS location_id
        FROM movement_stage s
        JOIN product p ON p.sku = s.sku
        JOIN location l ON l.code = s.location
        """
    )
    return []


_EXPIRE_FOR_BATCH = ledger_repository.expiry_statement(
    "SELECT DISTINCT product_id, location_id FROM movement_resolved"
)


async def apply(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    request_id: str | None,
    actor_id: uuid.UUID,
) -> list[ItemProblem]:
    """Apply the staged batch atomically; the items of any balance that would end below its
    reservations are returned instead (and nothing is written by the caller's rollback)."""
    db = await driver_connection(session)
    # Every touched balance is held before anything changes, in key order like every other
    # writer: existing rows are locked (ON CONFLICT ... WHERE false locks without writing),
    # missing ones are created empty (and so held). After this statement no concurrent
    # writer can create, change or lock one of them until we commit, so the statements
    # below, each with a fresh snapshot, see every balance as it finally stands.
    await db.execute(
        """
        INSERT INTO balance (tenant_id, product_id, location_id, on_hand, reserved)
        SELECT $1, product_id, location_id, 0, 0
        FROM (SELECT DISTINCT product_id, location_id FROM movement_resolved) touched
        ORDER BY product_id, location_id
        ON CONFLICT (tenant_id, product_id, location_id) DO UPDATE
            SET version = balance.version WHERE false
        """,
        tenant_id,
    )
    # Reservations only after their balances (the ledger's lock order), all of which the
    # statement above holds.
    expired = await db.fetch(_EXPIRE_FOR_BATCH.text)
    ledger_repository.note_expired(session, expired)
    short = await db.fetch(
        """
        WITH net AS (
            SELECT product_id, location_id, sum(delta) AS delta
            FROM movement_resolved GROUP BY product_id, location_id
        )
        SELECT m.idx
        FROM net n
        LEFT JOIN balance b USING (product_id, location_id)
        JOIN movement_resolved m USING (product_id, location_id)
        WHERE coalesce(b.on_hand, 0) + n.delta < coalesce(b.reserved, 0)
        ORDER BY m.idx
        LIMIT 1000
        """
    )
    if short:
        return [ItemProblem(row["idx"], "insufficient stock") for row in short]
    # Every touched balance exists and is held (above): one UPDATE applies the net changes.
    # (An upsert would check its proposed row, with a negative on_hand, against the CHECK
    # before noticing the conflict.)
    applied = await db.fetch(
        """
        UPDATE balance b
        SET on_hand = b.on_hand + n.delta, version = b.version + 1, updated_at = now()
        FROM (SELECT product_id, location_id, sum(delta)::bigint AS delta,
                     array_agg(id ORDER BY idx) AS movement_ids
              FROM movement_resolved GROUP BY product_id, location_id) n
        WHERE b.product_id = n.product_id AND b.location_id = n.location_id
        RETURNING b.product_id, b.location_id, n.delta, n.movement_ids
        """
    )
    for row in applied:
        ledger_repository.note_touch(
            session,
            (row["product_id"], row["location_id"]),
            available_change=row["delta"],
            movement_ids=row["movement_ids"],
        )
    await db.execute(
        """
        INSERT INTO movement (tenant_id, id, product_id, location_id, delta, kind, reason,
                              reference, occurred_at, request_id, actor_id)
        SELECT $1, id, product_id, location_id, delta, kind, reason, reference,
               coalesce(occurred_at, now()), $2, $3
        FROM movement_resolved
        ORDER BY idx
        """,
        tenant_id,
        request_id,
        actor_id,
    )
    return []
