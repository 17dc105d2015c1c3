"""If-Match under concurrency: of N writers holding the same ETag exactly one wins, the rest
get 412, and no write is lost silently. Every route that takes If-Match is listed here, and
the list is checked against the OpenAPI document so a new one cannot be missed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.support.helpers import PASSWORD, Tenant
from tests.support.inventory import Inventory

WRITERS = 6

# route -> (create the resource and return its path, the bodies the racing writers send)
Factory = Callable[[httpx.AsyncClient, Tenant], Awaitable[str]]


async def _user(client: httpx.AsyncClient, tenant: Tenant) -> str:
    created = await client.post(
        "/api/v1/users",
        json={
            "email": f"u-{secrets.token_hex(4)}@{tenant.slug}.example.com",
            "role": "member",
            "password": PASSWORD,
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    return f"/api/v1/users/{created.json()['id']}"


async def _product(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return f"/api/v1/products/{(await Inventory(client, tenant).product())['id']}"


async def _location(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return f"/api/v1/locations/{(await Inventory(client, tenant).location())['id']}"


async def _webhook(client: httpx.AsyncClient, tenant: Tenant) -> str:
    created = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/race", "events": ["*"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    return f"/api/v1/webhooks/{created.json()['id']}"


ROUTES: dict[str, tuple[Factory, list[dict[str, Any]]]] = {
    "/api/v1/users/{user_id}": (
        _user,
        [{"role": "viewer"}, {"name": "Renamed"}, {"role": "admin"}, {"is_active": False}],
    ),
    "/api/v1/products/{product_id}": (
        _product,
        [{"name": f"name {n}"} for n in range(4)] + [{"reorder_point": 5}],
    ),
    "/api/v1/locations/{location_id}": (_location, [{"name": f"name {n}"} for n in range(4)]),
    "/api/v1/webhooks/{webhook_id}": (
        _webhook,
        [{"description": f"d {n}"} for n in range(3)] + [{"events": ["stock.*"]}],
    ),
}


async def test_every_if_match_route_is_in_the_battery(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    taking_if_match = {
        path
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if any(
            parameter.get("in") == "header" and parameter["name"].lower() == "if-match"
            for parameter in operation.get("parameters", [])
        )
    }
    assert taking_if_match == set(ROUTES)


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_one_of_n_writers_with_the_same_etag_wins(
    client: httpx.AsyncClient, tenant: Tenant, route: str
) -> None:
    factory, bodies = ROUTES[route]
    for _ in range(3):  # a few rounds: the race must hold every time, not once
        path = await factory(client, tenant)
        before = await client.get(path, headers=tenant.headers)
        etag = before.headers["ETag"]
        responses = await asyncio.gather(
            *(
                client.patch(
                    path,
                    json=bodies[n % len(bodies)],
                    headers={**tenant.headers, "If-Match": etag},
                )
                for n in range(WRITERS)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [412] * (WRITERS - 1), [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 200)
        after = await client.get(path, headers=tenant.headers)
        assert after.headers["ETag"] == winner.headers["ETag"] == f'"{int(etag[1:-1]) + 1}"'
        assert after.json() == winner.json()
        for loser in responses:
            if loser.status_code == 412:
                assert loser.json()["error"]["code"] == "precondition_failed"
