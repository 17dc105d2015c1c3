"""Requests leave nothing for the cycle collector: a request's objects (its scope, the
framework's exit stacks, the server's protocol cycle, our middleware's state) are freed by
reference counting the moment it ends. A reference cycle in the request path holds all of
them until the collector's next full pass, which then stalls every request in flight."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import httpx

from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


@contextmanager
def unreachable_objects() -> Iterator[list[object]]:
    """What the collector finds unreachable while the block runs (kept for inspection)."""
    found: list[object] = []
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _server_side(objects: list[object]) -> list[str]:
    """The unreachable objects the server's code made: its functions and frames, and the
    framework's per-request exit stacks (the test client's own objects are not ours)."""
    names = []
    for obj in objects:
        if isinstance(obj, AsyncExitStack):
            names.append("AsyncExitStack")
        code = getattr(obj, "__code__", None) if isinstance(obj, types.FunctionType) else None
        if code is not None and any(
            part in code.co_filename for part in ("/stockyard/", "/starlette/", "/fastapi/")
        ):
            names.append(code.co_qualname)
    return names


async def test_hot_requests_leave_no_reference_cycles(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    inv = Inventory(client, tenant)
    product = await inv.product()
    code = (await inv.location())["code"]
    requests = [
        lambda: client.get("/livez"),
        lambda: client.get(f"/api/v1/products/{product['id']}", headers=tenant.headers),
        lambda: client.get("/api/v1/stock", headers=tenant.headers),
        lambda: client.get("/api/v1/movements", headers=tenant.headers),
        lambda: inv.move(product["sku"], code, "receipt", 1),
        lambda: inv.move(product["sku"], code, "issue", 10**6),  # refused: 409
        lambda: client.get("/api/v1/no-such-route", headers=tenant.headers),
    ]
    for send in requests:  # the first request of a route builds what it keeps
        await send()
    with unreachable_objects() as found:
        for _ in range(5):
            for send in requests:
                response = await send()
                assert response.status_code in (200, 201, 404, 409)
    assert _server_side(found) == []
