from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import httpx

from tests.support.helpers import PASSWORD, Tenant, bearer, password_login, signup


@dataclass
class Crew:
    """One tenant with a principal of every kind, plus an owner of another tenant."""

    tenant: Tenant
    tokens: dict[str, str]
    user_ids: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who]) if who in self.tokens else {}


async def add_user(client: httpx.AsyncClient, tenant: Tenant, role: str) -> tuple[str, str]:
    email = f"{role}-{secrets.token_hex(4)}@{tenant.slug}.example.com"
    created = await client.post(
        "/api/v1/users",
        json={"email": email, "role": role, "password": PASSWORD},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    login = await password_login(client, slug=tenant.slug, email=email)
    return created.json()["id"], login.json()["access_token"]


async def add_client(
    client: httpx.AsyncClient, tenant: Tenant, scopes: list[str]
) -> tuple[str, str, str]:
    created = await client.post(
        "/api/v1/clients", json={"name": "app", "scopes": scopes}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    client_id, secret = created.json()["client_id"], created.json()["client_secret"]
    return client_id, secret, await client_token(client, client_id, secret)


async def client_token(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def make_crew(client: httpx.AsyncClient) -> Crew:
    tenant = await signup(client)
    other = await signup(client)
    tokens = {"owner": tenant.access_token, "other_tenant": other.access_token}
    user_ids: dict[str, str] = {}
    for role in ("admin", "member", "viewer"):
        user_ids[role], tokens[role] = await add_user(client, tenant, role)
    _, _, tokens["client_read"] = await add_client(client, tenant, ["inventory:read"])
    _, _, tokens["client_rw"] = await add_client(
        client, tenant, ["inventory:read", "inventory:write"]
    )
    return Crew(tenant=tenant, tokens=tokens, user_ids=user_ids)
