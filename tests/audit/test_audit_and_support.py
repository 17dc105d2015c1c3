from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockyard.core.settings import SUPPORT_ROLE, Settings
from tests.conftest import make_settings, running_app
from tests.support.cli import run_cli
from tests.support.crew import Crew
from tests.support.helpers import Tenant, bearer
from tests.support.inventory import Inventory
from tests.support.permissions import MATRIX
from tests.support.services import TestServices


async def test_a_409_is_traceable_by_one_request_id_everywhere(
    client: httpx.AsyncClient,
    tenant: Tenant,
    staff_token: str,
    log_lines: list[str],
    settings: Settings,
) -> None:
    inv = Inventory(client, tenant)
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    response = await inv.post(
        "/movements",
        {"sku": sku, "location": loc, "kind": "issue", "quantity": 1},
        **{"X-Request-ID": "trace-me-409"},
    )
    assert response.status_code == 409
    assert response.headers["X-Request-ID"] == "trace-me-409"
    assert response.json()["error"]["request_id"] == "trace-me-409"

    logged = [json.loads(line) for line in log_lines]
    mine = [entry for entry in logged if entry.get("request_id") == "trace-me-409"]
    assert any(entry["event"] == "request" and entry["status"] == 409 for entry in mine)
    assert all(entry.get("tenant_id") == str(tenant.id) for entry in mine)

    audit = await client.get(
        "/api/v1/audit", params={"request_id": "trace-me-409"}, headers=tenant.headers
    )
    events = audit.json()["items"]
    assert [(e["action"], e["status"]) for e in events] == [("request.rejected", 409)]
    assert events[0]["details"]["code"] == "insufficient_stock"
    # The rolled-back movement left no movement.create event behind.
    assert all(e["action"] != "movement.create" for e in events)

    trace = await client.get("/api/v1/support/requests/trace-me-409", headers=bearer(staff_token))
    assert trace.status_code == 200, trace.text
    traced = trace.json()["events"]
    assert [(e["tenant_slug"], e["action"], e["status"]) for e in traced] == [
        (tenant.slug, "request.rejected", 409)
    ]
    code, output = await run_cli(settings, "trace", "trace-me-409")
    assert code == 0 and "action=request.rejected status=409" in output and tenant.slug in output


async def test_changes_and_their_events_commit_together(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    inv = Inventory(client, tenant)
    product = await inv.post("/products", {"sku": "AUD-1", "name": "x"}, **{"X-Request-ID": "c-1"})
    events = (
        await client.get("/api/v1/audit", params={"request_id": "c-1"}, headers=tenant.headers)
    ).json()["items"]
    assert [(e["action"], e["resource_id"]) for e in events] == [
        ("product.create", product.json()["id"])
    ]


async def test_staff_token_is_refused_by_every_tenant_route(
    client: httpx.AsyncClient, staff_token: str
) -> None:
    tenant_routes = [
        (method, path)
        for method, path in MATRIX
        if path.startswith("/api/v1/")
        and not path.startswith(("/api/v1/support", "/api/v1/auth", "/api/v1/tenants"))
    ]
    assert len(tenant_routes) > 20
    for method, path in tenant_routes:
        concrete = path.replace("{", "").replace("}", "")
        for name in ("user_id", "client_id", "product_id", "location_id", "reservation_id"):
            concrete = concrete.replace(name, "00000000-0000-0000-0000-000000000001")
        response = await client.request(method, concrete, headers=bearer(staff_token), json={})
        assert response.status_code == 403, (method, path, response.status_code)


async def test_tenant_admin_is_refused_by_support_routes(
    client: httpx.AsyncClient, crew: Crew
) -> None:
    for who in ("owner", "admin"):
        response = await client.get("/api/v1/support/requests/x", headers=crew.headers(who))
        assert response.status_code == 403


async def test_support_role_reads_audit_and_nothing_else(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, owner_db: asyncpg.Connection
) -> None:
    from stockyard.core.database import app_url, to_libpq_dsn

    await Inventory(client, tenant).product()  # one audited change of this tenant

    connection = await asyncpg.connect(to_libpq_dsn(app_url(settings)))
    try:
        for table in ("product", "movement", "app_user", "balance", "api_client", "refresh_token"):
            async with connection.transaction():
                await connection.execute(f"SET LOCAL ROLE {SUPPORT_ROLE}")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await connection.fetch(f"SELECT * FROM {table}")
        async with connection.transaction():
            await connection.execute(f"SET LOCAL ROLE {SUPPORT_ROLE}")
            # The support role sees the tenant's events (any tenant's, no tenant is set)...
            actions = await connection.fetch(
                "SELECT action FROM audit_event WHERE tenant_id = $1", tenant.id
            )
            assert actions, "the support role should read every tenant's audit events"
        async with connection.transaction():
            await connection.execute(f"SET LOCAL ROLE {SUPPORT_ROLE}")
            # ...but never what a request changed.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.fetch("SELECT details FROM audit_event")
    finally:
        await connection.close()
    # Without SET ROLE the app role gets nothing from its membership (NOINHERIT).
    assert (
        await owner_db.fetchval("SELECT rolinherit FROM pg_roles WHERE rolname = 'stockyard_app'")
        is False
    )


async def test_support_lookup_is_itself_audited(
    client: httpx.AsyncClient, staff_token: str, owner_db: asyncpg.Connection
) -> None:
    await client.get("/api/v1/support/requests/lookup-1", headers=bearer(staff_token))
    row = await owner_db.fetchrow(
        "SELECT actor_type, action, resource_id FROM audit_event "
        "WHERE action = 'support.trace' AND resource_id = 'lookup-1'"
    )
    assert row is not None and row["actor_type"] == "staff"


async def test_failed_login_is_audited(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "password",
            "username": tenant.owner_email,
            "password": "wrong" * 3,
            "tenant": tenant.slug,
        },
    )
    events = (
        await client.get(
            "/api/v1/audit", params={"action": "auth.login_failed"}, headers=tenant.headers
        )
    ).json()["items"]
    assert len(events) == 1 and events[0]["status"] == 400


async def test_members_cannot_read_the_audit_log(client: httpx.AsyncClient, crew: Crew) -> None:
    assert (await client.get("/api/v1/audit", headers=crew.headers("member"))).status_code == 403
    assert (await client.get("/api/v1/audit", headers=crew.headers("admin"))).status_code == 200


@pytest.mark.usefixtures("app")
async def test_metrics_parse_and_count_requests(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.get("/livez")
    text = (await client.get("/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = families["stockyard_http_requests"]
    livez = [
        s
        for s in requests.samples
        if s.labels.get("route") == "/livez" and s.name.endswith("_total")
    ]
    assert livez and livez[0].value >= 3
    assert "stockyard_http_request_duration_seconds" in families
    for gauge in ("stockyard_db_pool_connections_in_use", "stockyard_db_pool_connections_max"):
        pools = {sample.labels["pool"] for sample in families[gauge].samples}
        assert pools == {"sessions", "reads", "writes"}, gauge
    capacity = {
        s.labels["pool"]: s.value for s in families["stockyard_db_pool_connections_max"].samples
    }
    assert capacity["reads"] > 0 and capacity["writes"] > 0 and capacity["sessions"] > 0
    for family in families.values():
        for sample in family.samples:
            assert "tenant" not in sample.labels and "user" not in sample.labels


@pytest.mark.usefixtures("settings")
async def test_metrics_token_protects_metrics(services: TestServices) -> None:
    async with running_app(make_settings(services, metrics_token="m" * 20)) as (_, client):
        assert (await client.get("/metrics")).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 20})
        assert ok.status_code == 200


async def test_a_trace_shows_no_business_values_and_every_tenant_of_a_shared_id(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, staff_token: str
) -> None:
    """Request ids are chosen by clients: two tenants may send the same one. The trace keeps
    them apart by tenant, and shows what happened, never the SKU, location or quantity."""
    shared = f"shared-{tenant.slug}"
    skus = []
    for who in (tenant, other_tenant):
        inv = Inventory(client, who)
        sku = (await inv.product())["sku"]
        code = (await inv.location())["code"]
        skus += [sku, code]
        receipt = await inv.post(
            "/movements",
            {"sku": sku, "location": code, "kind": "receipt", "quantity": 7331},
            **{"X-Request-ID": shared},
        )
        assert receipt.status_code == 201
    trace = await client.get(f"/api/v1/support/requests/{shared}", headers=bearer(staff_token))
    assert trace.status_code == 200, trace.text
    body = trace.json()
    assert body["truncated"] is False
    assert sorted((e["tenant_slug"], e["action"]) for e in body["events"]) == sorted(
        [(tenant.slug, "movement.create"), (other_tenant.slug, "movement.create")]
    )
    assert {e["tenant_id"] for e in body["events"]} == {str(tenant.id), str(other_tenant.id)}
    assert all("details" not in event for event in body["events"])
    for business_value in [*skus, "7331"]:
        assert business_value not in trace.text


async def test_a_trace_is_bounded(
    client: httpx.AsyncClient, tenant: Tenant, staff_token: str, owner_db: asyncpg.Connection
) -> None:
    await owner_db.execute(
        """
        INSERT INTO audit_event (tenant_id, id, occurred_at, request_id, actor_type, action,
                                 status)
        SELECT $1, gen_random_uuid(), now(), 'busy-id', 'user', 'product.create', 201
        FROM generate_series(1, 250)
        """,
        tenant.id,
    )
    trace = await client.get("/api/v1/support/requests/busy-id", headers=bearer(staff_token))
    assert trace.status_code == 200
    assert len(trace.json()["events"]) == 200
    assert trace.json()["truncated"] is True
