"""Tokens, passwords, hashes and Authorization headers never reach a log line."""

from __future__ import annotations

import httpx

from tests.support.helpers import PASSWORD, Tenant, password_login, refresh


async def test_auth_flows_log_no_secrets(
    client: httpx.AsyncClient, tenant: Tenant, log_lines: list[str]
) -> None:
    login = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    tokens = login.json()
    await client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    rotated = (await refresh(client, tokens["refresh_token"])).json()
    await refresh(client, tokens["refresh_token"])  # reuse: logs a warning about the family
    await password_login(client, slug=tenant.slug, email=tenant.owner_email, password="wrong" * 3)
    await client.post(
        "/api/v1/tenants",
        json={"name": "x", "slug": "x", "owner_email": "bad", "owner_password": "hunter2hunter2"},
    )

    assert log_lines, "the requests above must have been logged"
    text = "\n".join(log_lines)
    secrets = [
        PASSWORD,
        "hunter2hunter2",
        tokens["access_token"],
        tokens["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
        tenant.access_token,
    ]
    for secret in secrets:
        assert secret not in text
    lowered = text.lower()
    for fragment in ("bearer ey", "$argon2", '"authorization"', 'refresh_token": "'):
        assert fragment not in lowered, fragment


async def test_access_log_carries_tenant_and_subject(
    client: httpx.AsyncClient, tenant: Tenant, log_lines: list[str]
) -> None:
    import json

    response = await client.get("/api/v1/me", headers=tenant.headers)
    request_id = response.headers["X-Request-ID"]
    entries = [json.loads(line) for line in log_lines]
    access = [e for e in entries if e.get("event") == "request" and e["request_id"] == request_id]
    assert len(access) == 1
    assert access[0]["tenant_id"] == str(tenant.id)
    assert access[0]["subject"] == response.json()["user"]["id"]
    assert access[0]["route"] == "/api/v1/me"
    assert access[0]["method"] == "GET" and access[0]["status"] == 200
    assert isinstance(access[0]["duration_ms"], float)
