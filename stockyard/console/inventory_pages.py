"""Inventory pages: the stock table, a product's page with its stock-level chart, the
movement history, and the form that records receipts, issues, adjustments and transfers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from stockyard.auth.scopes import Scope
from stockyard.console.charts import stock_chart
from stockyard.console.forms import (
    Problem,
    flash_and_redirect,
    form_of,
    local_instant,
    refused,
    taken_flash,
    text,
)
from stockyard.console.pages import PAGE_ROWS, PREFIX, console_page, page_url, render
from stockyard.console.pipeline import ConsoleCaller, ConsoleContext, InventoryReader
from stockyard.console.pipeline import InventoryWriter as InventoryWriterPrincipal
from stockyard.core.dependencies import request_id_of
from stockyard.core.errors import AppError
from stockyard.core.pagination import Paging, instant_cursor, text_pair_cursor
from stockyard.inventory.catalogue import service as catalogue
from stockyard.inventory.ledger import service as ledger
from stockyard.inventory.schemas import MovementCreate, MovementKind, TransferCreate

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# Location codes suggested by the filters and the movement form (a datalist: any code may be
# typed), and balances shown on a product's page before it points to the stock table.
LOCATION_CHOICES = 500
CHART_BUCKETS = 60
CHART_PERIODS = (7, 30, 90, 365)
FORM_KINDS = (
    ("receipt", "Receipt (stock in)"),
    ("issue", "Issue (stock out)"),
    ("adjustment", "Adjustment (count correction, + or −)"),
    ("transfer", "Transfer to another location"),
)


def _can_write(caller: ConsoleCaller) -> bool:
    # Only whether to draw the write forms: posting one is decided by `require` on its route.
    return Scope.INVENTORY_WRITE in caller.principal.scopes


async def _locations(caller: ConsoleCaller) -> list[Any]:
    return await catalogue.list_locations(
        caller.session, q=None, archived=False, after_code=None, limit=LOCATION_CHOICES
    )


@router.get("/stock")
async def stock_page(
    request: Request,
    caller: ConsoleContext,
    principal: InventoryReader,
    paging: Paging,
    q: Annotated[str | None, Query(max_length=100)] = None,
    location: Annotated[str | None, Query(max_length=64)] = None,
    below: Annotated[bool, Query()] = False,
) -> Response:
    paging = console_page(paging)
    rows = await ledger.stock_of_products(
        caller.session,
        sku=None,
        sku_prefix=q or None,
        location=location or None,
        below_reorder_point=below,
        after=text_pair_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(rows, lambda row: (row[0].sku, row[0].location))
    filters = {"q": q or "", "location": location or "", "below": "1" if below else ""}
    return render(
        request,
        "stock.html",
        me=caller.console,
        title="Stock",
        items=[item for item, _ in page],
        product_ids={item.sku: product_id for item, product_id in page},
        locations=await _locations(caller),
        filters={**filters, "below": below},
        can_write=_can_write(caller),
        next_url=page_url(f"{PREFIX}/stock", next_cursor, **filters),
        error=None,
    )


@router.get("/products/{product_id}")
async def product_page(
    request: Request,
    product_id: uuid.UUID,
    caller: ConsoleContext,
    principal: InventoryReader,
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
) -> Response:
    product = await catalogue.get_product(caller.session, product_id=product_id)
    since = datetime.now(UTC) - timedelta(days=days)
    balances = await ledger.stock(
        caller.session,
        sku=product.sku,
        location=None,
        below_reorder_point=False,
        after=None,
        limit=LOCATION_CHOICES + 1,
    )
    levels = await ledger.stock_levels(
        caller.session, product_id=product.id, since=since, buckets=CHART_BUCKETS
    )
    movements = await ledger.history(
        caller.session,
        sku=product.sku,
        location=None,
        kind=None,
        start=since,
        end=None,
        after=None,
        limit=PAGE_ROWS,
    )
    return render(
        request,
        "product.html",
        me=caller.console,
        title=product.sku,
        product=product,
        balances=balances[:LOCATION_CHOICES],
        more_balances=len(balances) > LOCATION_CHOICES,
        chart=stock_chart(levels, title=f"On hand of {product.sku} over the last {days} days"),
        days=days,
        periods=sorted({*CHART_PERIODS, days}),
        movements=movements,
        can_write=_can_write(caller),
    )


@router.get("/movements")
async def movements_page(
    request: Request,
    caller: ConsoleContext,
    principal: InventoryReader,
    paging: Paging,
    sku: Annotated[str | None, Query(max_length=100)] = None,
    location: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[MovementKind | None, Query()] = None,
    start: Annotated[str | None, Query(max_length=32)] = None,
    end: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    paging = console_page(paging)
    filters = {
        "sku": sku or "",
        "location": location or "",
        "kind": kind.value if kind else "",
        "start": start or "",
        "end": end or "",
    }
    context: dict[str, Any] = {
        "me": caller.console,
        "title": "Movements",
        "filters": filters,
        "kinds": [k.value for k in MovementKind],
        "can_write": _can_write(caller),
    }
    try:
        start_at, end_at = local_instant(start), local_instant(end)
    except ValueError:
        problem = Problem(422, "Check the filters", "The dates are not valid.")
        return render(
            request,
            "movements.html",
            status=422,
            movements=[],
            next_url=None,
            error=problem,
            **context,
        )
    movements = await ledger.history(
        caller.session,
        sku=sku or None,
        location=location or None,
        kind=kind,
        start=start_at,
        end=end_at,
        after=instant_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(movements, lambda m: (m.occurred_at.isoformat(), str(m.id)))
    return render(
        request,
        "movements.html",
        movements=page,
        next_url=page_url(f"{PREFIX}/movements", next_cursor, **filters),
        error=None,
        **context,
    )


async def _movement_form(
    request: Request,
    caller: ConsoleCaller,
    *,
    form: dict[str, str],
    status: int = 200,
    error: Problem | None = None,
    result: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "movement_form.html",
        status=status,
        me=caller.console,
        title="Record a movement",
        kinds=FORM_KINDS,
        locations=await _locations(caller),
        form=form,
        error=error,
        result=result,
    )


EMPTY_FORM = {
    "kind": "receipt",
    "sku": "",
    "location": "",
    "to_location": "",
    "quantity": "",
    "reason": "",
    "reference": "",
}


@router.get("/movements/new")
async def movement_form(
    request: Request,
    caller: ConsoleContext,
    principal: InventoryWriterPrincipal,
    sku: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    done = await taken_flash(request, caller)
    form = {**EMPTY_FORM, "sku": sku or ""}
    if done:
        form.update(kind=done.get("kind", "receipt"), location=done.get("location", ""))
    return await _movement_form(request, caller, form=form, result=done or None)


@router.post("/movements/new")
async def record_movement(
    request: Request, caller: ConsoleContext, principal: InventoryWriterPrincipal
) -> Response:
    """The API's movement or transfer service, with the same rules and errors: an issue
    beyond what is available is 409 `insufficient_stock`, a bad quantity 422."""
    posted = await form_of(request)
    entered = {name: text(posted, name) for name in EMPTY_FORM}
    request_id = request_id_of(request)
    try:
        quantity = int(entered["quantity"])
        if entered["kind"] == "transfer":
            transfer = TransferCreate.model_validate(
                {
                    "sku": entered["sku"],
                    "from_location": entered["location"],
                    "to_location": entered["to_location"],
                    "quantity": quantity,
                    "reference": entered["reference"] or None,
                }
            )
            await ledger.transfer(caller.session, principal, body=transfer, request_id=request_id)
            summary = (
                f"Moved {transfer.quantity} of {transfer.sku} from {transfer.from_location} "
                f"to {transfer.to_location}."
            )
        else:
            body = MovementCreate.model_validate(
                {
                    "sku": entered["sku"],
                    "location": entered["location"],
                    "kind": entered["kind"],
                    "quantity": quantity,
                    "reason": entered["reason"] or None,
                    "reference": entered["reference"] or None,
                }
            )
            result = await ledger.record_movement(
                caller.session, principal, body=body, request_id=request_id
            )
            summary = (
                f"Recorded a {body.kind} of {body.quantity} for {body.sku} at {body.location}: "
                f"{result.balance.on_hand} on hand, {result.balance.available} available."
            )
    except (ValidationError, ValueError, AppError) as failed:
        problem = await refused(request, caller.session, principal, failed)
        return await _movement_form(
            request, caller, form=entered, status=problem.status, error=problem
        )
    return await flash_and_redirect(
        request,
        caller,
        "/movements/new",
        summary=summary,
        request_id=request_id or "",
        kind=entered["kind"],
        location=entered["location"],
    )
