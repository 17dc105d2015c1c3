"""All SQL of the ledger that touches balances: movements, history, stock, the balance side
of reservations (hold, give back, expire) and the drift check. Bulk ingest is
bulk_repository.py; reading and adding reservations is reservations/repository.py.

The statements of a single movement, a transfer and a reservation run on the driver (see
core/database.fetch): they are the write path's hot loop.

Every balance change is ONE guarded statement (an upsert or an UPDATE whose WHERE carries the
stock rule), so two transactions can never both pass a check that only one of them may pass:
PostgreSQL re-evaluates the WHERE against the row as the first one left it.

One lock order, everywhere (single movements, transfers, bulk ingest, reservations, the lazy
expiry and the periodic sweep): balance rows in (product_id, location_id) order, and a
reservation row only while its balance row is already held. Two writers then always meet on
the first balance they share and queue there, so they cannot deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import TypeAdapter
from sqlalchemy import Row, TextClause, event, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from stockyard.core.database import (
    Reads,
    TenantReads,
    Writes,
    check_before_commit,
    execute_many,
    fetch,
    fetch_one,
)
from stockyard.core.rendering import DOCUMENT, document_of
from stockyard.inventory.catalogue.repository import prefix_pattern
from stockyard.inventory.models import Balance, Movement, Reservation
from stockyard.inventory.schemas import MovementRead, StockItem


@dataclass
class BalanceTouch:
    """What one transaction did to one balance, for its stock.changed event."""

    available_change: int = 0
    movement_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExpiredReservation:
    id: uuid.UUID
    product_id: uuid.UUID
    location_id: uuid.UUID
    quantity: int
    reference: str | None


BalanceKey = tuple[uuid.UUID, uuid.UUID]

# Every balance statement below notes the balance it touched on the session, so that the
# transaction's stock events can be written before it commits (ledger/service.py
# publish_stock_changes); a commit with unpublished changes is refused (the listener at the
# end of this module), so no writer can change stock without its event.
_TOUCHED = "stockyard.touched_balances"
# stock.changed names at most this many of a transaction's movements on one balance (a bulk
# batch may hold 10,000); `movement_count` always counts them all.
MAX_EVENT_MOVEMENT_IDS = 1000
_EXPIRED = "stockyard.expired_reservations"


def note_touch(
    session: Writes,
    key: BalanceKey,
    *,
    available_change: int = 0,
    movement_ids: Sequence[uuid.UUID] = (),
) -> None:
    touched: dict[BalanceKey, BalanceTouch] = session.info.setdefault(_TOUCHED, {})
    touch = touched.setdefault(key, BalanceTouch())
    touch.available_change += available_change
    touch.movement_ids.extend(movement_ids)


def note_expired(session: Writes, rows: Sequence[asyncpg.Record], *, touch: bool = True) -> None:
    """Reservations let go in this transaction; with `touch`, their balances are noted as
    changed too (bulk ingest writes the stock events of its balances itself)."""
    expired: list[ExpiredReservation] = session.info.setdefault(_EXPIRED, [])
    for row in rows:
        reservation = ExpiredReservation(
            row["id"], row["product_id"], row["location_id"], row["quantity"], row["reference"]
        )
        expired.append(reservation)
        if touch:
            note_touch(
                session,
                (reservation.product_id, reservation.location_id),
                available_change=reservation.quantity,
            )


def take_changes(
    session: Writes,
) -> tuple[dict[BalanceKey, BalanceTouch], list[ExpiredReservation]]:
    """The balances touched and the reservations expired since the last call."""
    return session.info.pop(_TOUCHED, {}), session.info.pop(_EXPIRED, [])


@check_before_commit
def _refuse_unpublished_stock_changes(info: dict[str, Any]) -> None:
    if info.get(_TOUCHED) or info.get(_EXPIRED):
        raise RuntimeError("stock changed without its events: call publish_stock_changes")


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_changes(session: Session) -> None:
    session.info.pop(_TOUCHED, None)
    session.info.pop(_EXPIRED, None)


@dataclass(frozen=True, slots=True)
class BalanceRow:
    product_id: uuid.UUID
    location_id: uuid.UUID
    on_hand: int
    reserved: int
    version: int


def _balance(row: asyncpg.Record | None) -> BalanceRow | None:
    if row is None:
        return None
    return BalanceRow(
        row["product_id"], row["location_id"], row["on_hand"], row["reserved"], row["version"]
    )


_RETURNING = "RETURNING product_id, location_id, on_hand, reserved, version"


def expiry_statement(held: str) -> TextClause:
    """Expire the overdue reservations of the balances `held` selects, returning them. `held`
    locks those balance rows FOR UPDATE (in key order when it is several) before any
    reservation is touched, unless the caller holds them already (bulk ingest): a reservation
    row can only reach the UPDATE joined to its balance row, which is locked by then. Each
    balance then gives back what its reservations held."""
    return text(
        f"""
        WITH held AS ({held}), expired AS (
            UPDATE reservation r SET status = 'expired', updated_at = now()
            FROM held h
            WHERE r.product_id = h.product_id AND r.location_id = h.location_id
              AND r.status = 'active' AND r.expires_at <= now()
            RETURNING r.id, r.product_id, r.location_id, r.quantity, r.reference
        ), totals AS (
            SELECT product_id, location_id, sum(quantity) AS quantity
            FROM expired GROUP BY product_id, location_id
        ), given_back AS (
            UPDATE balance b
            SET reserved = b.reserved - t.quantity, version = b.version + 1, updated_at = now()
            FROM totals t
            WHERE b.product_id = t.product_id AND b.location_id = t.location_id
            RETURNING b.product_id
        )
        SELECT id, product_id, location_id, quantity, reference FROM expired
        """
    )


# Lazily, before one balance is touched.
_EXPIRE_FOR_BALANCE = expiry_statement(
    """
    SELECT product_id, location_id FROM balance
    WHERE product_id = :product_id AND location_id = :location_id
    FOR UPDATE
    """
)

# The periodic sweep: every balance with an overdue reservation, in key order.
_EXPIRE_ALL = expiry_statement(
    """
    SELECT b.product_id, b.location_id FROM balance b
    WHERE (b.product_id, b.location_id) IN (
        SELECT product_id, location_id FROM reservation
        WHERE status = 'active' AND expires_at <= now())
    ORDER BY b.product_id, b.location_id
    FOR UPDATE
    """
)

_RECEIVE = text(
    f"""
    INSERT INTO balance (tenant_id, product_id, location_id, on_hand, reserved)
    VALUES (:tenant_id, :product_id, :location_id, :delta, 0)
    ON CONFLICT (tenant_id, product_id, location_id) DO UPDATE
        SET on_hand = balance.on_hand + EXCLUDED.on_hand,
            version = balance.version + 1, updated_at = now()
    {_RETURNING}
    """
)

_TAKE = text(
    f"""
    UPDATE balance
    SET on_hand = on_hand + :delta, version = version + 1, updated_at = now()
    WHERE product_id = :product_id AND location_id = :location_id
      AND on_hand + :delta >= reserved
    {_RETURNING}
    """
)

_RESERVE = text(
    f"""
    UPDATE balance
    SET reserved = reserved + :quantity, version = version + 1, updated_at = now()
    WHERE product_id = :product_id AND location_id = :location_id
      AND on_hand - reserved >= :quantity
    {_RETURNING}
    """
)

_UNRESERVE = text(
    f"""
    UPDATE balance
    SET reserved = reserved - :quantity, on_hand = on_hand - :consumed,
        version = version + 1, updated_at = now()
    WHERE product_id = :product_id AND location_id = :location_id
    {_RETURNING}
    """
)


async def expire_reservations_of(
    session: Writes, product_id: uuid.UUID, location_id: uuid.UUID
) -> int:
    """Lazily let expired reservations of one balance go as it is touched; how much they
    held (what the balance's `reserved` fell by)."""
    expired = await fetch(
        session, _EXPIRE_FOR_BALANCE.text, {"product_id": product_id, "location_id": location_id}
    )
    note_expired(session, expired)
    return sum(row["quantity"] for row in expired)


async def apply_delta(
    session: Writes,
    *,
    tenant_id: uuid.UUID,
    product_id: uuid.UUID,
    location_id: uuid.UUID,
    delta: int,
) -> BalanceRow | None:
    """Add `delta` to on_hand; None when that would leave on_hand below reserved."""
    params = {
        "tenant_id": tenant_id,
        "product_id": product_id,
        "location_id": location_id,
        "delta": delta,
    }
    statement = _RECEIVE if delta > 0 else _TAKE
    balance = _balance(await fetch_one(session, statement.text, params))
    if balance is not None:
        note_touch(session, (product_id, location_id), available_change=delta)
    return balance


async def reserve(
    session: Writes, *, product_id: uuid.UUID, location_id: uuid.UUID, quantity: int
) -> BalanceRow | None:
    """Hold `quantity`; None when less than that is available."""
    params = {"product_id": product_id, "location_id": location_id, "quantity": quantity}
    balance = _balance(await fetch_one(session, _RESERVE.text, params))
    if balance is not None:
        note_touch(session, (product_id, location_id), available_change=-quantity)
    return balance


async def unreserve(
    session: Writes,
    *,
    product_id: uuid.UUID,
    location_id: uuid.UUID,
    quantity: int,
    consume: bool,
) -> BalanceRow:
    """Stop holding `quantity`; with `consume` it also leaves on_hand (a committed issue)."""
    params = {
        "product_id": product_id,
        "location_id": location_id,
        "quantity": quantity,
        "consumed": quantity if consume else 0,
    }
    row = _balance(await fetch_one(session, _UNRESERVE.text, params))
    assert row is not None, "a reservation always has its balance (foreign key)"
    # available = on_hand - reserved: a release gives `quantity` back, a commit none.
    note_touch(session, (product_id, location_id), available_change=0 if consume else quantity)
    return row


_MOVEMENT_COLUMNS = [column.name for column in Movement.__table__.columns]
_ADD_MOVEMENT = (
    f"INSERT INTO movement ({', '.join(_MOVEMENT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _MOVEMENT_COLUMNS)})"
)


async def add_movements(session: Writes, movements: Sequence[Movement]) -> None:
    """Append to the ledger. The rows are built in full here (ids, times), so the driver
    inserts them without the ORM's unit of work: no flush, no re-read."""
    await execute_many(
        session,
        _ADD_MOVEMENT,
        [{name: getattr(movement, name) for name in _MOVEMENT_COLUMNS} for movement in movements],
    )
    for movement in movements:
        note_touch(session, (movement.product_id, movement.location_id), movement_ids=[movement.id])


@dataclass(frozen=True, slots=True)
class MovementFilter:
    sku: str | None
    location: str | None
    kind: str | None
    start: datetime | None
    end: datetime | None


_HISTORY = """
    SELECT m.id, p.sku, l.code AS location, m.product_id, m.location_id, m.delta, m.kind,
           m.reason, m.reference, m.occurred_at, m.recorded_at, m.request_id, m.actor_id,
           m.transfer_id
    FROM movement m
    JOIN product p ON p.tenant_id = m.tenant_id AND p.id = m.product_id
    JOIN location l ON l.tenant_id = m.tenant_id AND l.id = m.location_id
    WHERE true {filters}
    ORDER BY m.occurred_at, m.id
    LIMIT :limit
"""
# The same page rendered as the API's JSON (core/rendering.py), with each row's key. The
# documents are built over the page, once it is cut: built in its statement, they would be
# made for every row that reaches a sort, kept or not.
_HISTORY_DOCUMENTS = f"""
    SELECT page.occurred_at, page.id, {DOCUMENT}
    FROM ({_HISTORY}) AS page
    {document_of(MovementRead, {name: f"page.{name}" for name in MovementRead.model_fields})}
    ORDER BY page.occurred_at, page.id
"""

# A page validated in one call, not one call per row: ~0.07 ms less per 100-row page.
_MOVEMENT_LIST = TypeAdapter(list[MovementRead])


def _history_filters(
    where: MovementFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> tuple[str, dict[str, Any]]:
    filters = []
    params: dict[str, Any] = {"limit": limit}
    # The product and location are looked up once per statement (an InitPlan each), so the
    # (tenant_id, product_id, occurred_at, id) index serves the page in order; an unknown
    # SKU or code compares with NULL and matches nothing.
    if where.sku is not None:
        filters.append("AND m.product_id = (SELECT id FROM product WHERE sku = :sku)")
        params["sku"] = where.sku
    if where.location is not None:
        filters.append("AND m.location_id = (SELECT id FROM location WHERE code = :location)")
        params["location"] = where.location
    if where.kind is not None:
        filters.append("AND m.kind = :kind")
        params["kind"] = where.kind
    if where.start is not None:
        filters.append("AND m.occurred_at >= :start")
        params["start"] = where.start
    if where.end is not None:
        filters.append("AND m.occurred_at < :end")
        params["end"] = where.end
    if after is not None:
        filters.append("AND (m.occurred_at, m.id) > (:after_at, :after_id)")
        params.update(after_at=after[0], after_id=after[1])
    return " ".join(filters), params


async def history(
    reads: Reads,
    *,
    where: MovementFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[MovementRead]:
    """Movements in (occurred_at, id) order: served by the (tenant_id, product_id,
    occurred_at, id) index when a product is named, keyset-paginated so deep pages stay cheap.
    Run by the driver and read straight into the API's shape: a page is up to 500 rows."""
    filters, params = _history_filters(where, after, limit)
    rows = await fetch(reads, _HISTORY.format(filters=filters), params)
    return _MOVEMENT_LIST.validate_python([dict(row) for row in rows])


async def _sku_page(
    reads: TenantReads,
    statement: str,
    sku: str,
    after: tuple[Any, Any] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One page of a SKU's rows through its self-scoped function (migrations 0014 and 0016),
    in one round trip: `statement` takes the tenant, the SKU, the cursor's sort key and
    tiebreak (both null on the first page) and the limit."""
    after_key, after_tiebreak = after if after is not None else (None, None)
    return await reads.fetch_self_scoped(
        statement,
        {
            "tenant_id": reads.tenant_id,
            "sku": sku,
            "after_key": after_key,
            "after_tiebreak": after_tiebreak,
            "limit": limit,
        },
    )


# The usual history request, a SKU's movements page after page, through the function that
# scopes itself to the tenant (migration 0014): one round trip, and the same page.
_SKU_HISTORY_DOCUMENTS = f"""
    SELECT page.occurred_at, page.id, {DOCUMENT}
    FROM stockyard_product_movements_in_tenant(
        :tenant_id, :sku, :after_key, :after_tiebreak, :limit) AS page
    {document_of(MovementRead, {name: f"page.{name}" for name in MovementRead.model_fields})}
    ORDER BY page.occurred_at, page.id
"""


async def history_documents(
    reads: Reads,
    *,
    where: MovementFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """`history`'s rows as (occurred_at, id, document): each movement's key, and its JSON as
    `MovementRead` serializes it."""
    others = (where.location, where.kind, where.start, where.end)
    if isinstance(reads, TenantReads) and where.sku is not None and others == (None,) * 4:
        return await _sku_page(reads, _SKU_HISTORY_DOCUMENTS, where.sku, after, limit)
    filters, params = _history_filters(where, after, limit)
    return await fetch(reads, _HISTORY_DOCUMENTS.format(filters=filters), params)


_STOCK = """
    SELECT p.sku, l.code AS location, b.on_hand, b.reserved, p.reorder_point, p.id AS product_id
    FROM balance b
    JOIN product p ON p.id = b.product_id
    JOIN location l ON l.id = b.location_id
    WHERE true {filters}
    ORDER BY p.sku, l.code
    LIMIT :limit
"""
_STOCK_ITEM = document_of(
    StockItem,
    {
        "sku": "page.sku",
        "location": "page.location",
        "on_hand": "page.on_hand",
        "reserved": "page.reserved",
        "available": "page.on_hand - page.reserved",
        "reorder_point": "page.reorder_point",
    },
)
# The same page rendered as the API's JSON, as `_HISTORY_DOCUMENTS` is.
_STOCK_DOCUMENTS = f"""
    SELECT page.sku, page.location, {DOCUMENT}
    FROM ({_STOCK}) AS page
    {_STOCK_ITEM}
    ORDER BY page.sku, page.location
"""


@dataclass(frozen=True, slots=True)
class StockFilter:
    sku: str | None
    location: str | None
    below_reorder_point: bool
    sku_prefix: str | None = None


def _stock_filters(
    where: StockFilter, after: tuple[str, str] | None, limit: int
) -> tuple[str, dict[str, Any]]:
    filters = []
    params: dict[str, Any] = {"limit": limit}
    if where.sku is not None:
        filters.append("AND p.sku = :sku")
        params["sku"] = where.sku
    if where.sku_prefix:
        filters.append("AND p.sku LIKE :sku_prefix")
        params["sku_prefix"] = prefix_pattern(where.sku_prefix)
    if where.location is not None:
        filters.append("AND l.code = :location")
        params["location"] = where.location
    if where.below_reorder_point:
        filters.append(
            "AND p.reorder_point IS NOT NULL AND b.on_hand - b.reserved < p.reorder_point"
        )
    if after is not None:
        filters.append("AND (p.sku, l.code) > (:after_sku, :after_location)")
        params.update(after_sku=after[0], after_location=after[1])
    return " ".join(filters), params


async def stock(
    reads: Reads, *, where: StockFilter, after: tuple[str, str] | None, limit: int
) -> list[asyncpg.Record]:
    filters, params = _stock_filters(where, after, limit)
    # Run by the driver (see core/database.fetch): a stock read is a hot path.
    return await fetch(reads, _STOCK.format(filters=filters), params)


# The usual stock request, a SKU's balances, through the function that scopes itself to the
# tenant (migration 0016): one round trip, and the same page.
_SKU_STOCK_DOCUMENTS = f"""
    SELECT page.sku, page.location, {DOCUMENT}
    FROM stockyard_product_stock_in_tenant(
        :tenant_id, :sku, :after_key, :after_tiebreak, :limit) AS page
    {_STOCK_ITEM}
    ORDER BY page.sku, page.location
"""


async def stock_documents(
    reads: Reads, *, where: StockFilter, after: tuple[str, str] | None, limit: int
) -> list[asyncpg.Record]:
    """`stock`'s rows as (sku, location, document): each row's key, and its JSON as
    `StockItem` serializes it."""
    sku = where.sku
    if (
        isinstance(reads, TenantReads)
        and sku is not None
        and where == StockFilter(sku, None, False)
    ):
        return await _sku_page(reads, _SKU_STOCK_DOCUMENTS, sku, after, limit)
    filters, params = _stock_filters(where, after, limit)
    return await fetch(reads, _STOCK_DOCUMENTS.format(filters=filters), params)


# The net change per time bucket of one product since `since` (future-dated movements land in
# buckets after now): walked back from today's on-hand total, they give the level over time.
_NET_BY_BUCKET = """
    SELECT date_bin(CAST(:step AS interval), m.occurred_at, CAST(:since AS timestamptz))
           AS bucket,
           sum(m.delta) AS net
    FROM movement m
    WHERE m.product_id = :product_id AND m.occurred_at >= :since
    GROUP BY 1
    ORDER BY 1
"""


async def net_change_by_bucket(
    session: AsyncSession, *, product_id: uuid.UUID, since: datetime, step: timedelta
) -> list[tuple[datetime, int]]:
    rows = await fetch(
        session, _NET_BY_BUCKET, {"product_id": product_id, "since": since, "step": step}
    )
    return [(row["bucket"], int(row["net"])) for row in rows]


async def on_hand_total(session: AsyncSession, product_id: uuid.UUID) -> int:
    row = await fetch_one(
        session,
        "SELECT coalesce(sum(on_hand), 0) AS on_hand FROM balance WHERE product_id = :product_id",
        {"product_id": product_id},
    )
    return int(row["on_hand"]) if row is not None else 0


async def lock_reservation(session: AsyncSession, reservation: Reservation) -> Reservation:
    """Hold a reservation's balance row, then the reservation row itself (the ledger's lock
    order), and reload the reservation as it now stands: two closes of one reservation, or a
    close racing the sweep, serialize here."""
    held = (
        select(Balance.product_id)
        .where(
            Balance.product_id == reservation.product_id,
            Balance.location_id == reservation.location_id,
        )
        .with_for_update()
        .cte("held")
    )
    statement = (
        select(Reservation)
        .join(held, held.c.product_id == Reservation.product_id)
        .where(Reservation.id == reservation.id)
        .with_for_update(of=Reservation)
        .execution_options(populate_existing=True)
    )
    locked = await session.scalar(statement)
    assert locked is not None, "reservations are never deleted"
    return locked


async def tenants_with_expired_reservations(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(text("SELECT stockyard_tenants_with_expired_reservations()"))
    return list(rows)


async def expire_all_reservations(session: AsyncSession) -> int:
    """The periodic sweep for one tenant: every expired reservation lets its stock go. The
    balances are locked first, in key order, and only their reservations are expired."""
    expired = await fetch(session, _EXPIRE_ALL.text)
    note_expired(session, expired)
    return len(expired)


_CURRENT_BALANCES = """
    SELECT b.product_id, b.location_id, p.sku, l.code AS location, b.on_hand, b.reserved,
           b.version, p.reorder_point
    FROM unnest(:product_ids::uuid[], :location_ids::uuid[]) AS k(product_id, location_id)
    JOIN balance b ON b.product_id = k.product_id AND b.location_id = k.location_id
    JOIN product p ON p.id = b.product_id
    JOIN location l ON l.id = b.location_id
"""


async def current_balances(session: Writes, keys: Sequence[BalanceKey]) -> list[asyncpg.Record]:
    """The balances named, as they stand in this transaction, with their SKU, location code
    and reorder point."""
    return await fetch(
        session,
        _CURRENT_BALANCES,
        {"product_ids": [k[0] for k in keys], "location_ids": [k[1] for k in keys]},
    )


async def tenant_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list(await session.scalars(text("SELECT stockyard_tenant_ids()")))


async def drift(session: AsyncSession, tenant_id: uuid.UUID) -> list[Row[Any]]:
    """Balances of one tenant that disagree with their ledger or their active reservations.
    The tenant is named in the statement as well: an operator's superuser connection is not
    bound by row-level security, and would otherwise report every tenant's drift once per
    tenant."""
    result = await session.execute(
        text(
            """
            WITH ledger AS (
                SELECT product_id, location_id, sum(delta) AS on_hand
                FROM movement WHERE tenant_id = :tenant_id GROUP BY product_id, location_id
            ), held AS (
                SELECT product_id, location_id, sum(quantity) AS reserved
                FROM reservation WHERE tenant_id = :tenant_id AND status = 'active'
                GROUP BY product_id, location_id
            ), own AS (
                SELECT * FROM balance WHERE tenant_id = :tenant_id
            )
            SELECT p.sku, l.code AS location,
                   coalesce(b.on_hand, 0) AS on_hand, coalesce(g.on_hand, 0) AS ledger_on_hand,
                   coalesce(b.reserved, 0) AS reserved, coalesce(h.reserved, 0) AS held
            FROM own b
            FULL JOIN ledger g USING (product_id, location_id)
            LEFT JOIN held h USING (product_id, location_id)
            JOIN product p ON p.id = coalesce(b.product_id, g.product_id)
            JOIN location l ON l.id = coalesce(b.location_id, g.location_id)
            WHERE coalesce(b.on_hand, 0) <> coalesce(g.on_hand, 0)
               OR coalesce(b.reserved, 0) <> coalesce(h.reserved, 0)
            ORDER BY p.sku, l.code
            """
        ),
        {"tenant_id": tenant_id},
    )
    return list(result.all())
