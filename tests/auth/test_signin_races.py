"""A sign-in racing a change to the account never leaves a session the change should have
ended, whichever commits first, at every offset between the two."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import httpx
import jwt
import pytest

from tests.support.crew import add_client
from tests.support.helpers import PASSWORD, Tenant, bearer, password_login, refresh

# The change starts this many seconds after the sign-in (negative: before it). Password
# checks take ~50-150 ms here, so the sweep covers "before", "during" and "after".
OFFSETS = [-0.2, -0.1, -0.05, 0.0, 0.03, 0.06, 0.1, 0.15, 0.25]


async def _user(client: httpx.AsyncClient, tenant: Tenant, role: str) -> tuple[str, str, str]:
    email = f"racer-{secrets.token_hex(4)}@{tenant.slug}.example.com"
    created = await client.post(
        "/api/v1/users",
        json={"email": email, "role": role, "password": PASSWORD},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    login = await password_login(client, slug=tenant.slug, email=email)
    return created.json()["id"], email, login.json()["access_token"]


async def _race(
    client: httpx.AsyncClient,
    tenant: Tenant,
    email: str,
    change: Callable[[], Awaitable[httpx.Response]],
    offset: float,
) -> tuple[httpx.Response, httpx.Response]:
    async def sign_in() -> httpx.Response:
        await asyncio.sleep(max(-offset, 0))
        return await password_login(client, slug=tenant.slug, email=email)

    async def changed() -> httpx.Response:
        await asyncio.sleep(max(offset, 0))
        return await change()

    signed_in, change_response = await asyncio.gather(sign_in(), changed())
    return signed_in, change_response


async def _assert_dead(client: httpx.AsyncClient, signed_in: httpx.Response) -> None:
    tokens = signed_in.json()
    me = await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401, me.text
    assert (await refresh(client, tokens["refresh_token"])).status_code == 400


@pytest.mark.parametrize("offset", OFFSETS)
async def test_sign_in_racing_a_password_change(
    client: httpx.AsyncClient, tenant: Tenant, offset: float
) -> None:
    _, email, token = await _user(client, tenant, "member")

    def change() -> Awaitable[httpx.Response]:
        return client.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new secret"},
            headers=bearer(token),
        )

    signed_in, changed = await _race(client, tenant, email, change, offset)
    assert changed.status_code == 204, changed.text
    assert signed_in.status_code in (200, 400), signed_in.text
    if signed_in.status_code == 200:  # signed in with the old password: must not survive
        await _assert_dead(client, signed_in)


@pytest.mark.parametrize("offset", OFFSETS)
async def test_sign_in_racing_a_deactivation(
    client: httpx.AsyncClient, tenant: Tenant, offset: float
) -> None:
    user_id, email, _ = await _user(client, tenant, "admin")

    def change() -> Awaitable[httpx.Response]:
        return client.delete(f"/api/v1/users/{user_id}", headers=tenant.headers)

    signed_in, changed = await _race(client, tenant, email, change, offset)
    assert changed.status_code == 204, changed.text
    assert signed_in.status_code in (200, 400), signed_in.text
    if signed_in.status_code == 200:
        await _assert_dead(client, signed_in)


@pytest.mark.parametrize("offset", OFFSETS)
async def test_sign_in_racing_a_role_change(
    client: httpx.AsyncClient, tenant: Tenant, offset: float
) -> None:
    user_id, email, _ = await _user(client, tenant, "admin")

    def change() -> Awaitable[httpx.Response]:
        return client.patch(
            f"/api/v1/users/{user_id}",
            json={"role": "viewer"},
            headers={**tenant.headers, "If-Match": '"1"'},
        )

    signed_in, changed = await _race(client, tenant, email, change, offset)
    assert changed.status_code == 200, changed.text
    assert signed_in.status_code == 200, signed_in.text
    claims = jwt.decode(signed_in.json()["access_token"], options={"verify_signature": False})
    if claims["role"] == "admin":  # the superseded role: that session must not survive
        await _assert_dead(client, signed_in)
    else:
        assert claims["role"] == "viewer"
        me = await client.get("/api/v1/me", headers=bearer(signed_in.json()["access_token"]))
        assert me.status_code == 200


@pytest.mark.parametrize("offset", OFFSETS)
async def test_client_credentials_racing_the_clients_deletion(
    client: httpx.AsyncClient, tenant: Tenant, offset: float
) -> None:
    """A token issued to an API client around the moment it is deleted never outlives the
    deletion: its tokens carry the client as their session, which the deletion revokes."""
    client_id, secret, _ = await add_client(client, tenant, ["inventory:read"])

    async def grant() -> httpx.Response:
        await asyncio.sleep(max(-offset, 0))
        return await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )

    async def delete() -> httpx.Response:
        await asyncio.sleep(max(offset, 0))
        return await client.delete(f"/api/v1/clients/{client_id}", headers=tenant.headers)

    granted, deleted = await asyncio.gather(grant(), delete())
    assert deleted.status_code == 204, deleted.text
    assert granted.status_code in (200, 401), granted.text
    if granted.status_code == 200:
        stock = await client.get("/api/v1/stock", headers=bearer(granted.json()["access_token"]))
        assert stock.status_code == 401, stock.text
