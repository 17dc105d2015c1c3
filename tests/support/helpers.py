from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import httpx

PASSWORD = "correct horse battery staple"


@dataclass
class Tenant:
    id: uuid.UUID
    slug: str
    owner_email: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def password_login(
    client: httpx.AsyncClient, *, slug: str, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password, "tenant": slug},
    )


async def signup(client: httpx.AsyncClient) -> Tenant:
    slug = f"t-{secrets.token_hex(6)}"
    email = f"owner@{slug}.example.com"
    created = await client.post(
        "/api/v1/tenants",
        json={
            "name": f"Tenant {slug}",
            "slug": slug,
            "owner_email": email,
            "owner_password": PASSWORD,
        },
    )
    assert created.status_code == 201, created.text
    tokens = await password_login(client, slug=slug, email=email)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Tenant(
        id=uuid.UUID(created.json()["id"]),
        slug=slug,
        owner_email=email,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )
