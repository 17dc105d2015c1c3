"""The ledger's rules at the service level, beside the HTTP tests: the domain functions called
directly, in a tenant transaction as the app role (row-level security on), with no route,
pipeline or serializer between the rule and the test."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.auth.scopes import ROLE_SCOPES, Role
from stockyard.core import tenancy
from stockyard.core.database import app_url, create_engine, create_sessionmaker
from stockyard.core.principal import AccessClaims
from stockyard.core.settings import Settings
from stockyard.inventory.catalogue import service as catalogue
from stockyard.inventory.exceptions import InsufficientStock, ReservationClosed, SameLocation
from stockyard.inventory.ledger import service as ledger
from stockyard.inventory.reservations import service as reservations
from stockyard.inventory.schemas import (
    LocationCreate,
    MovementCreate,
    ProductCreate,
    RecordedKind,
    ReservationCreate,
    ReservationStatus,
    TransferCreate,
)
from tests.support.helpers import Tenant

T = TypeVar("T")
Run = Callable[[Callable[[AsyncSession], Awaitable[T]]], Awaitable[T]]


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(app_url(settings), settings, pool_size=2)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def principal(tenant: Tenant) -> AccessClaims:
    return AccessClaims(
        subject=uuid.uuid4(),
        tenant_id=tenant.id,
        session_id=uuid.uuid4(),
        role=Role.MEMBER.value,
        scopes=ROLE_SCOPES[Role.MEMBER],
        expires_at=0,
        token_id=uuid.uuid4().hex,
    )


@pytest.fixture
def run(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant) -> Run[Any]:
    """Run one unit of work in its own committed tenant transaction (a failed one rolls back)."""

    async def _run(work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with tenancy.tenant_transaction(sessionmaker, tenant.id) as session:
            return await work(session)

    return _run


@pytest.fixture
async def stocked(run: Run[Any], principal: AccessClaims) -> tuple[str, str, str]:
    """A product with 10 on hand at one location and none at another."""
    sku, here, there = (f"{name}-{secrets.token_hex(3)}" for name in ("SKU", "HERE", "THERE"))

    async def setup(session: AsyncSession) -> None:
        await catalogue.create_product(session, principal, body=ProductCreate(sku=sku, name="x"))
        for code in (here, there):
            await catalogue.create_location(
                session, principal, body=LocationCreate(code=code, name=code)
            )
        await ledger.record_movement(
            session,
            principal,
            body=MovementCreate(sku=sku, location=here, kind=RecordedKind.RECEIPT, quantity=10),
            request_id=None,
        )

    await run(setup)
    return sku, here, there


async def _on_hand(run: Run[Any], sku: str, location: str) -> tuple[int, int]:
    page = await run(
        lambda s: ledger.stock(
            s, sku=sku, location=location, below_reorder_point=False, after=None, limit=5
        )
    )
    return (page[0].on_hand, page[0].reserved) if page else (0, 0)


async def test_an_issue_may_not_take_on_hand_below_zero(
    run: Run[Any], principal: AccessClaims, stocked: tuple[str, str, str]
) -> None:
    sku, here, _ = stocked
    too_many = MovementCreate(sku=sku, location=here, kind=RecordedKind.ISSUE, quantity=11)
    with pytest.raises(InsufficientStock):
        await run(lambda s: ledger.record_movement(s, principal, body=too_many, request_id=None))
    assert await _on_hand(run, sku, here) == (10, 0)


async def test_a_reservation_holds_stock_an_issue_cannot_take(
    run: Run[Any], principal: AccessClaims, stocked: tuple[str, str, str]
) -> None:
    sku, here, _ = stocked
    held = await run(
        lambda s: reservations.reserve(
            s, principal, body=ReservationCreate(sku=sku, location=here, quantity=8)
        )
    )
    assert (held.balance.on_hand, held.balance.available) == (10, 2)
    three = MovementCreate(sku=sku, location=here, kind=RecordedKind.ISSUE, quantity=3)
    with pytest.raises(InsufficientStock):
        await run(lambda s: ledger.record_movement(s, principal, body=three, request_id=None))
    committed = await run(
        lambda s: reservations.commit_reservation(
            s, principal, reservation_id=held.reservation.id, request_id=None
        )
    )
    assert committed.reservation.status == ReservationStatus.COMMITTED
    assert await _on_hand(run, sku, here) == (2, 0)
    with pytest.raises(ReservationClosed):
        await run(
            lambda s: reservations.release_reservation(
                s, principal, reservation_id=held.reservation.id
            )
        )


async def test_a_transfer_moves_stock_between_two_locations_only(
    run: Run[Any], principal: AccessClaims, stocked: tuple[str, str, str]
) -> None:
    sku, here, there = stocked
    moved = await run(
        lambda s: ledger.transfer(
            s,
            principal,
            body=TransferCreate(sku=sku, from_location=here, to_location=there, quantity=4),
            request_id=None,
        )
    )
    assert sorted(balance.on_hand for balance in moved.balances) == [4, 6]
    with pytest.raises(SameLocation):
        await run(
            lambda s: ledger.transfer(
                s,
                principal,
                body=TransferCreate(sku=sku, from_location=here, to_location=here, quantity=1),
                request_id=None,
            )
        )
    too_many = TransferCreate(sku=sku, from_location=there, to_location=here, quantity=5)
    with pytest.raises(InsufficientStock):
        await run(lambda s: ledger.transfer(s, principal, body=too_many, request_id=None))
    assert await _on_hand(run, sku, here) == (6, 0)
    assert await _on_hand(run, sku, there) == (4, 0)
