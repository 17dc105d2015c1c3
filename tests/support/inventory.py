from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.support.helpers import Tenant


class Inventory:
    """Terse calls against the inventory API as one tenant."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.client, self.tenant = client, tenant

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.client.post(
            f"/api/v1{path}", json=body, headers={**self.tenant.headers, **headers}
        )

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(f"/api/v1{path}", params=params, headers=self.tenant.headers)

    async def product(self, sku: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"sku": sku or f"SKU-{secrets.token_hex(4)}", "name": "Widget", **fields}
        response = await self.post("/products", body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def location(self, code: str | None = None) -> dict[str, Any]:
        body = {"code": code or f"LOC-{secrets.token_hex(4)}", "name": "Shelf"}
        response = await self.post("/locations", body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def move(self, sku: str, location: str, kind: str, quantity: int) -> httpx.Response:
        return await self.post(
            "/movements", {"sku": sku, "location": location, "kind": kind, "quantity": quantity}
        )

    async def receive(self, sku: str, location: str, quantity: int) -> None:
        response = await self.move(sku, location, "receipt", quantity)
        assert response.status_code == 201, response.text

    async def balance(self, sku: str, location: str) -> dict[str, Any]:
        items = (await self.get("/stock", sku=sku, location=location)).json()["items"]
        return dict(items[0]) if items else {"on_hand": 0, "reserved": 0, "available": 0}
