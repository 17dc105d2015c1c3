"""Pages the database renders (core/rendering.py) are, byte for byte, what the API's models
write for the same rows: the history and stock routes answer from PostgreSQL's JSON, and
the models' own serialization of the repository's typed rows is the reference."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel, Field, TypeAdapter, computed_field, field_serializer

from stockyard.core.database import TenantReads, app_url, to_libpq_dsn
from stockyard.core.pagination import PageRequest, instant_cursor, text_pair_cursor
from stockyard.core.rendering import document_of
from stockyard.core.settings import Settings
from stockyard.inventory.ledger import service as ledger
from stockyard.inventory.schemas import MovementPage, StockPage
from tests.support.inventory import Inventory

# Text a client may store in a movement's reason or reference (all but NUL), chosen where two
# JSON writers may differ: quotes and backslashes, every C0 control, DEL, line and paragraph
# separators, astral-plane characters, HTML, the empty string, and no value at all.
HOSTILE_TEXTS: list[str | None] = [
    'a "quoted" \\ back\\slash / solidus',
    "".join(chr(code) for code in range(1, 32)) + "\x7f",
    "é ✓ \u2028 \u2029 \ufeff 😀 𝄞",
    "</script><!-- ' -->",
    "",
    None,
]

# Instants where the JSON text of a time may differ: no microseconds (no fraction at all),
# one, the most, an offset that is not whole hours, the first and last instants stored.
EDGE_INSTANTS = [
    "2026-01-31T09:30:00Z",
    "2026-01-31T09:30:00.000001Z",
    "2026-01-31T09:30:00.120000+05:45",
    "2026-01-31T09:30:59.999999-09:30",
    "0001-01-01T00:00:00.000001Z",
    "9999-12-31T23:59:59.999998Z",
]


@pytest.fixture
async def reader_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(to_libpq_dsn(app_url(settings)), min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_instants_render_as_the_models_write_them(app_db: asyncpg.Connection) -> None:
    rng = random.Random(15)
    moments = [datetime.fromisoformat(text) for text in EDGE_INSTANTS] + [
        datetime(1, 1, 1, tzinfo=UTC)
        + timedelta(
            seconds=rng.randrange(315_537_897_600),
            microseconds=rng.choice([0, rng.randrange(1_000_000)]),
        )
        for _ in range(2_000)
    ]
    # The session's own zone must not leak into the text.
    await app_db.execute("SET TIME ZONE 'Asia/Kathmandu'")
    rendered = await app_db.fetch(
        "SELECT stockyard_instant_text(moment) FROM unnest($1::timestamptz[]) "
        "WITH ORDINALITY AS given (moment, n) ORDER BY n",
        moments,
    )
    as_models_write = TypeAdapter(datetime)
    assert [row[0] for row in rendered] == [
        as_models_write.dump_json(moment.astimezone(UTC)).decode().strip('"') for moment in moments
    ]


async def _pages(
    inv: Inventory, path: str, params: dict[str, Any], limit: int
) -> list[tuple[str | None, bytes]]:
    """Every page of a list through the API: the cursor each was asked with, and its body."""
    pages: list[tuple[str | None, bytes]] = []
    cursor: str | None = None
    while True:
        asked = (
            {**params, "limit": limit}
            if cursor is None
            else {**params, "limit": limit, "cursor": cursor}
        )
        response = await inv.get(path, **asked)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        pages.append((cursor, response.content))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


@asynccontextmanager
async def _reads(pool: asyncpg.Pool, inv: Inventory) -> AsyncIterator[TenantReads]:
    """The typed reference read: the repository's own rows, in the tenant, as the app role."""
    reads = TenantReads(pool, inv.tenant.id, timeout=10)
    try:
        yield reads
    finally:
        await reads.close(commit=False)


def _as_models_write(
    page_type: type[MovementPage] | type[StockPage],
    rows: list[Any],
    limit: int,
    cursor_of: Callable[[Any], tuple[str, ...]],
) -> bytes:
    page, next_cursor = PageRequest(limit, None).cut(rows, cursor_of)
    return page_type(items=page, next_cursor=next_cursor).model_dump_json().encode()


async def test_history_and_stock_pages_are_the_models_bytes(
    inv: Inventory, reader_pool: asyncpg.Pool
) -> None:
    sku = (await inv.product())["sku"]
    other_sku = (await inv.product(reorder_point=50))["sku"]
    here, there = (await inv.location())["code"], (await inv.location())["code"]
    for index, text in enumerate(HOSTILE_TEXTS):
        for moment in EDGE_INSTANTS:
            response = await inv.post(
                "/movements",
                {
                    "sku": sku,
                    "location": here,
                    "kind": "receipt",
                    "quantity": index + 1,
                    "reason": text,
                    "reference": None if text is None else text[::-1],
                    "occurred_at": moment,
                },
            )
            assert response.status_code == 201, response.text
    transfer = {"sku": sku, "from_location": here, "to_location": there, "quantity": 4}
    assert (await inv.post("/transfers", transfer)).status_code == 201
    assert (await inv.move(sku, there, "adjustment", -1)).status_code == 201
    await inv.receive(other_sku, there, 7)
    hold = {"sku": other_sku, "location": there, "quantity": 2}
    assert (await inv.post("/reservations", hold)).status_code == 201

    history_pages = await _pages(inv, "/movements", {"sku": sku}, limit=7)
    # 36 receipts, the transfer's two legs, the adjustment: 39 rows, 6 pages.
    assert len(history_pages) == 6
    for cursor, body in history_pages:
        async with _reads(reader_pool, inv) as reads:
            rows = await ledger.history(
                reads,
                sku=sku,
                location=None,
                kind=None,
                start=None,
                end=None,
                after=instant_cursor(cursor),
                limit=8,
            )
        assert body == _as_models_write(
            MovementPage, rows, 7, lambda m: (m.occurred_at.isoformat(), str(m.id))
        )

    # All balances (the general statement), and one SKU's (its self-scoped function).
    for sku_filter, page_count in ((None, 3), (sku, 2)):
        params = {} if sku_filter is None else {"sku": sku_filter}
        stock_pages = await _pages(inv, "/stock", params, limit=1)
        assert len(stock_pages) == page_count
        for cursor, body in stock_pages:
            async with _reads(reader_pool, inv) as reads:
                items = await ledger.stock(
                    reads,
                    sku=sku_filter,
                    location=None,
                    below_reorder_point=False,
                    after=text_pair_cursor(cursor),
                    limit=2,
                )
            assert body == _as_models_write(StockPage, items, 1, lambda i: (i.sku, i.location))


def test_a_model_is_rendered_from_exactly_its_fields_in_order() -> None:
    class Pair(BaseModel):
        id: uuid.UUID
        name: str

    assert "t.id AS id, t.name AS name" in document_of(Pair, {"id": "t.id", "name": "t.name"})
    with pytest.raises(TypeError, match="exactly its fields"):
        document_of(Pair, {"name": "t.name", "id": "t.id"})
    with pytest.raises(TypeError, match="exactly its fields"):
        document_of(Pair, {"id": "t.id"})


def test_a_model_whose_json_is_more_than_its_fields_is_refused() -> None:
    class Computed(BaseModel):
        n: int

        @computed_field  # type: ignore[prop-decorator]
        @property
        def twice(self) -> int:
            return 2 * self.n

    class Aliased(BaseModel):
        sku: str = Field(serialization_alias="SKU")

    class Serialized(BaseModel):
        n: int

        @field_serializer("n")
        def _as_text(self, n: int) -> str:
            return str(n)

    for model in (Computed, Aliased, Serialized):
        with pytest.raises(TypeError, match="change its JSON"):
            document_of(model, {name: f"t.{name}" for name in model.model_fields})


def test_a_field_whose_json_may_differ_is_refused() -> None:
    class Priced(BaseModel):
        price: float

    class Either(BaseModel):
        value: int | str

    with pytest.raises(TypeError, match="no known-identical JSON"):
        document_of(Priced, {"price": "t.price"})
    with pytest.raises(TypeError, match="not one type"):
        document_of(Either, {"value": "t.value"})


async def test_a_row_stored_at_an_infinity_renders_its_instant_and_pages_past(
    inv: Inventory, app_db: asyncpg.Connection
) -> None:
    """Before the API refused them, asyncpg stored `0001-01-01T00:00:00Z` and
    `9999-12-31T23:59:59.999999Z` as -infinity and infinity: such a row reads as the instant
    the client sent, and a page that ends on it gives a cursor that reaches the rows after."""
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    await inv.receive(sku, code, 5)
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(inv.tenant.id))
        for moment in ("-infinity", "infinity"):
            # A copy of the receipt, as such a row was written (the ledger only appends).
            await app_db.execute(
                """
                INSERT INTO movement (id, tenant_id, product_id, location_id, delta, kind,
                                      occurred_at, recorded_at)
                SELECT gen_random_uuid(), tenant_id, product_id, location_id, delta, kind,
                       $1::text::timestamptz, recorded_at
                FROM movement WHERE tenant_id = $2
                LIMIT 1
                """,
                moment,
                inv.tenant.id,
            )
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"sku": sku, "limit": 1, **({} if cursor is None else {"cursor": cursor})}
        response = await inv.get("/movements", **params)
        assert response.status_code == 200, response.text
        seen += [item["occurred_at"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    assert seen[0] == "0001-01-01T00:00:00Z" and seen[2] == "9999-12-31T23:59:59.999999Z"
