from __future__ import annotations

import httpx
import pytest

from stockyard.core.settings import Settings
from tests.conftest import make_settings, random_slug, running_app
from tests.support.helpers import PASSWORD, password_login
from tests.support.services import TestServices


def _body(slug: str, **overrides: str) -> dict[str, str]:
    return {
        "name": "Acme",
        "slug": slug,
        "owner_email": f"owner@{slug}.example.com",
        "owner_password": PASSWORD,
        **overrides,
    }


async def test_signup_creates_tenant_and_owner_who_can_sign_in(client: httpx.AsyncClient) -> None:
    slug = random_slug()
    response = await client.post("/api/v1/tenants", json=_body(slug))
    assert response.status_code == 201
    assert response.json()["slug"] == slug and response.json()["name"] == "Acme"
    login = await password_login(client, slug=slug, email=f"owner@{slug}.example.com")
    assert login.status_code == 200


async def test_taken_slug_is_409_and_leaves_nothing_behind(client: httpx.AsyncClient) -> None:
    slug = random_slug()
    assert (await client.post("/api/v1/tenants", json=_body(slug))).status_code == 201
    again = await client.post("/api/v1/tenants", json=_body(slug, owner_email="second@example.com"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    login = await password_login(client, slug=slug, email="second@example.com")
    assert login.status_code == 400


@pytest.mark.parametrize("slug", ["a", "-abc", "ABC", "has space", "x" * 64, "ümlaut"])
async def test_bad_slugs_are_rejected(client: httpx.AsyncClient, slug: str) -> None:
    response = await client.post("/api/v1/tenants", json={**_body("placeholder"), "slug": slug})
    assert response.status_code == 422


async def test_short_password_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/tenants", json=_body(random_slug(), owner_password="123456789")
    )
    assert response.status_code == 422


@pytest.mark.usefixtures("settings")
async def test_signup_disabled_is_403(services: TestServices) -> None:
    async with running_app(make_settings(services, allow_signup=False)) as (_, client):
        response = await client.post("/api/v1/tenants", json=_body(random_slug()))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "signup_disabled"


async def test_cli_creates_a_tenant_with_password_from_stdin(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.support.cli import run_cli

    slug = random_slug()
    code, output = await run_cli(
        settings,
        "tenants",
        "create",
        "--slug",
        slug,
        "--name",
        "From CLI",
        "--owner-email",
        f"cli@{slug}.example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    assert slug in output
    login = await password_login(client, slug=slug, email=f"cli@{slug}.example.com")
    assert login.status_code == 200
