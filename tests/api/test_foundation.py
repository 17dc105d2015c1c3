from __future__ import annotations

import gc
import json

import httpx
from fastapi import FastAPI

from stockyard.api.app import YOUNG_COLLECTION_THRESHOLD
from stockyard.api.middleware import REQUEST_ID_PATTERN
from stockyard.core.settings import Settings
from tests.conftest import running_app


async def test_health_reports_both_services(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "db": "ok", "redis": "ok"}


async def test_inbound_request_id_is_echoed_in_header_envelope_and_access_log(
    client: httpx.AsyncClient, log_lines: list[str]
) -> None:
    response = await client.get("/api/v1/no-such-route", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.json()["error"]["request_id"] == "abc-123"
    access = [json.loads(line) for line in log_lines if '"request"' in line]
    assert any(
        entry["event"] == "request" and entry["request_id"] == "abc-123" and entry["status"] == 404
        for entry in access
    )


async def test_invalid_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    bad = "not valid!" + "x" * 200
    response = await client.get("/health", headers={"X-Request-ID": bad})
    echoed = response.headers["X-Request-ID"]
    assert echoed != bad
    assert REQUEST_ID_PATTERN.match(echoed)


async def test_validation_error_uses_envelope_and_never_echoes_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/tenants",
        json={
            "name": "x",
            "slug": "BAD SLUG",
            "owner_email": "a@b.example.com",
            "owner_password": "short-secret",
        },
        headers={"X-Request-ID": "req-422"},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["request_id"] == "req-422"
    assert "short-secret" not in response.text
    assert any(detail["loc"][-1] == "slug" for detail in error["details"])


async def test_method_not_allowed_uses_envelope(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_unhandled_exception_is_a_500_envelope_without_traceback(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def explode() -> None:
        raise RuntimeError("SELECT secret FROM internals")

    app.add_api_route("/test-only/explode", explode)
    try:
        response = await client.get("/test-only/explode", headers={"X-Request-ID": "boom-1"})
    finally:
        app.router.routes.pop()
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == "boom-1"
    assert response.headers["X-Request-ID"] == "boom-1"
    assert "SELECT" not in response.text and "Traceback" not in response.text


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/auth/token" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_the_heap_built_at_startup_is_frozen_while_the_app_runs(settings: Settings) -> None:
    # Frozen, the collector's full passes skip the objects that live as long as the app (a
    # pass over them stalled every request in flight ~100 ms); stopped, the app leaves them
    # collectable again. Unfrozen first: the suite's shared app froze its own at start.
    gc.unfreeze()
    async with running_app(settings) as (_, client):
        assert gc.get_freeze_count() > 10_000
        assert (await client.get("/livez")).status_code == 200
    assert gc.get_freeze_count() == 0


async def test_the_young_generation_is_collected_less_often_while_the_app_runs(
    settings: Settings,
) -> None:
    # Each young-generation pass walks the requests in flight: the app makes them rarer, and
    # gives the process back the collector's schedule as it found it when it stops. The
    # interpreter's default first: the suite's shared app set its own at start.
    shared = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        async with running_app(settings) as (_, client):
            assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, 10, 10)
            assert YOUNG_COLLECTION_THRESHOLD >= 10_000
            assert (await client.get("/livez")).status_code == 200
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*shared)
