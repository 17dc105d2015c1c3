"""Webhooks end to end: the API's own dispatcher delivering to a real HTTP receiver on the
loopback, checked with the Standard Webhooks reference verifier (`standardwebhooks`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from stockyard.core.settings import Settings
from stockyard.webhooks.sender import Sender
from tests.conftest import make_settings, running_app
from tests.support.helpers import Tenant, bearer, signup
from tests.support.inventory import Inventory
from tests.support.receiver import Receiver
from tests.support.services import TestServices

# Fast retries, so a test sees three attempts in about a second.
DISPATCH = {
    "webhook_dispatch": True,
    "webhook_allow_private_targets": True,
    "webhook_poll_seconds": 0.2,
    "webhook_retry_schedule": "0.2,0.2,0.2",
    # Long enough that no held request times out while a test holds it.
    "webhook_timeout_seconds": 30,
}


@pytest.fixture(scope="module")
async def dispatching(
    services: TestServices, settings: Settings
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API with its dispatcher running (the shared test app has none)."""
    async with running_app(make_settings(services, **DISPATCH)) as pair:
        yield pair


@pytest.fixture
def api(dispatching: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return dispatching[1]


@pytest.fixture
async def owner(api: httpx.AsyncClient) -> Tenant:
    return await signup(api)


async def subscribe(
    api: httpx.AsyncClient, tenant: Tenant, url: str, events: list[str]
) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/webhooks", json={"url": url, "events": events}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deliveries(api: httpx.AsyncClient, tenant: Tenant, webhook_id: str) -> list[Any]:
    response = await api.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def settled(api: httpx.AsyncClient, tenant: Tenant, webhook_id: str, count: int) -> list[Any]:
    """The delivery log once `count` deliveries have stopped being pending."""
    for _ in range(300):
        items = await deliveries(api, tenant, webhook_id)
        if len(items) >= count and all(item["state"] != "pending" for item in items):
            return items
        await asyncio.sleep(0.1)
    raise AssertionError(f"deliveries did not settle: {items}")


async def test_a_receipt_is_delivered_once_signed_as_standard_webhooks_verify(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["stock.changed"])
    assert hook["secret"].startswith("whsec_")
    inv = Inventory(api, owner)
    sku, loc = (await inv.product())["sku"], (await inv.location())["code"]
    receipt = await inv.move(sku, loc, "receipt", 7)
    assert receipt.status_code == 201

    (message,) = await receiver.wait_for(1)
    payload = Webhook(hook["secret"]).verify(message.body, message.headers)
    assert payload["type"] == "stock.changed"
    assert (payload["data"]["sku"], payload["data"]["location"]) == (sku, loc)
    assert payload["data"]["on_hand"] == 7
    assert payload["data"]["movement_ids"] == [receipt.json()["movement"]["id"]]
    # webhook-id is the event's id in the feed: receivers deduplicate on it.
    feed = (await inv.get("/events", type="stock.changed")).json()["items"]
    assert [event["id"] for event in feed] == [message.webhook_id]
    # A wrong secret or a changed body fails verification.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(message.body, message.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(message.body.replace(b"7", b"8"), message.headers)

    (delivery,) = await settled(api, owner, hook["id"], 1)
    assert delivery["state"] == "delivered" and delivery["event_id"] == message.webhook_id
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    assert len(receiver.received) == 1


async def test_a_refused_movement_sends_nothing(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["*"])
    inv = Inventory(api, owner)
    sku, loc = (await inv.product())["sku"], (await inv.location())["code"]
    await receiver.wait_for(2)  # product.created, location.created
    oversell = await inv.move(sku, loc, "issue", 5)
    assert oversell.status_code == 409
    sent = await api.post(f"/api/v1/webhooks/{hook['id']}/test", headers=owner.headers)
    assert sent.status_code == 202
    # The test event queued after the 409 arrives; nothing from the 409 came before or after.
    # (The first two may arrive in either order: deliveries to one endpoint run concurrently.)
    received = await receiver.wait_for(3)
    types = [r.json["type"] for r in received]
    assert sorted(types[:2]) == ["location.created", "product.created"]
    assert types[2] == "webhook.test"
    assert received[2].webhook_id == sent.json()["event_id"]
    await settled(api, owner, hook["id"], 3)
    assert len(receiver.received) == 3


async def test_a_bulk_of_1000_over_50_balances_sends_50_stock_changed_per_batch(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["stock.changed"])
    inv = Inventory(api, owner)
    skus = [(await inv.product())["sku"] for _ in range(10)]
    locations = [(await inv.location())["code"] for _ in range(5)]
    pairs = [(sku, loc) for sku in skus for loc in locations]
    for _ in range(2):
        items = [
            {"sku": sku, "location": loc, "kind": "receipt", "quantity": 1}
            for _ in range(20)
            for sku, loc in pairs
        ]
        response = await inv.post("/movements/bulk", {"items": items})
        assert response.status_code == 201, response.text

    received = await receiver.wait_for(100)
    sequences: dict[tuple[str, str], list[int]] = defaultdict(list)
    on_hand: dict[tuple[str, str], list[int]] = defaultdict(list)
    for message in received:
        data = Webhook(hook["secret"]).verify(message.body, message.headers)["data"]
        key = (data["sku"], data["location"])
        sequences[key].append(data["sequence"])
        on_hand[key].append(data["on_hand"])
        assert data["movement_count"] == 20
    assert set(sequences) == set(pairs) and len(received) == 100
    for key in pairs:
        # Order across deliveries is not promised; `sequence` says which is the later state.
        first, second = sorted(zip(sequences[key], on_hand[key], strict=True))
        assert first[0] < second[0] and (first[1], second[1]) == (20, 40)
    await settled(api, owner, hook["id"], 100)
    assert len(receiver.received) == 100


async def test_a_receiver_failing_twice_gets_the_same_message_a_third_time(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["product.created"])
    receiver.statuses = [500, 503]
    await Inventory(api, owner).product()

    received = await receiver.wait_for(3)
    assert len({message.webhook_id for message in received}) == 1
    for message in received:
        Webhook(hook["secret"]).verify(message.body, message.headers)
    (delivery,) = await settled(api, owner, hook["id"], 1)
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    # Failing, then healthy again.
    endpoint = (await api.get(f"/api/v1/webhooks/{hook['id']}", headers=owner.headers)).json()
    assert endpoint["failing_since"] is None and endpoint["enabled"]


async def test_a_delivery_that_never_succeeds_fails_after_the_schedule(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["product.created"])
    receiver.statuses = [500] * 10
    await Inventory(api, owner).product()
    (delivery,) = await settled(api, owner, hook["id"], 1)
    # One first attempt and one per delay of the schedule (three), then it has failed.
    assert delivery["state"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [500] * 4
    endpoint = (await api.get(f"/api/v1/webhooks/{hook['id']}", headers=owner.headers)).json()
    assert endpoint["failing_since"] is not None


async def test_410_gone_disables_the_endpoint_and_the_audit_log_says_so(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["product.created"])
    receiver.statuses = [410]
    inv = Inventory(api, owner)
    await inv.product()
    (delivery,) = await settled(api, owner, hook["id"], 1)
    assert delivery["state"] == "failed"
    endpoint = (await api.get(f"/api/v1/webhooks/{hook['id']}", headers=owner.headers)).json()
    assert (endpoint["enabled"], endpoint["disabled_reason"]) == (False, "gone")
    audit = (
        await api.get("/api/v1/audit", params={"action": "webhook.disabled"}, headers=owner.headers)
    ).json()["items"]
    assert [(a["resource_id"], a["actor_type"]) for a in audit] == [(hook["id"], "system")]
    # Disabled: new events are not sent; enabling it again sends what came meanwhile.
    await inv.product()
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 1
    enabled = await api.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"enabled": True},
        headers={**owner.headers, "If-Match": f'"{endpoint["version"]}"'},
    )
    assert enabled.status_code == 200, enabled.text
    assert (await receiver.wait_for(2))[1].json["type"] == "product.created"


async def test_tenant_b_never_receives_tenant_a_events(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    a, b = await signup(api), await signup(api)
    other = await Receiver().start()
    try:
        hook_a = await subscribe(api, a, receiver.url, ["*"])
        hook_b = await subscribe(api, b, other.url, ["*"])
        await Inventory(api, a).product(sku="A-ONLY")
        await Inventory(api, b).product(sku="B-ONLY")
        (for_a,) = await receiver.wait_for(1)
        (for_b,) = await other.wait_for(1)
        assert Webhook(hook_a["secret"]).verify(for_a.body, for_a.headers)["data"]["sku"] == (
            "A-ONLY"
        )
        assert Webhook(hook_b["secret"]).verify(for_b.body, for_b.headers)["data"]["sku"] == (
            "B-ONLY"
        )
        # B can't see, change, test, replay or read the log of A's endpoint: 404 each.
        base = f"/api/v1/webhooks/{hook_a['id']}"
        for method, path, body in [
            ("GET", base, None),
            ("PATCH", base, {"description": "mine now"}),
            ("DELETE", base, None),
            ("GET", f"{base}/deliveries", None),
            ("POST", f"{base}/test", None),
            ("POST", f"{base}/rotate-secret", None),
            ("POST", f"{base}/replay", {"after": "2020-01-01T00:00:00Z"}),
        ]:
            response = await api.request(
                method, path, json=body, headers={**b.headers, "If-Match": '"1"'}
            )
            assert response.status_code == 404, (method, path, response.text)
        listed = (await api.get("/api/v1/webhooks", headers=b.headers)).json()["items"]
        assert [hook["id"] for hook in listed] == [hook_b["id"]]
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 1 and len(other.received) == 1
    finally:
        await other.stop()


async def test_a_slow_endpoint_does_not_hold_up_another_tenants_deliveries(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    slow_tenant, fast_tenant = await signup(api), await signup(api)
    fast = await Receiver().start()
    try:
        await subscribe(api, slow_tenant, receiver.url, ["product.created"])
        await subscribe(api, fast_tenant, fast.url, ["product.created"])
        receiver.answering.clear()  # the slow endpoint takes every request and answers none
        for _ in range(30):
            await Inventory(api, slow_tenant).product()
        await receiver.wait_for(1)  # in flight and stuck
        await Inventory(api, fast_tenant).product()
        await fast.wait_for(1)
        # Delivered while the slow endpoint still holds what it was sent, which is no more
        # than its share of the pool (webhook_endpoint_concurrency, 4 by default).
        assert receiver.answering.is_set() is False
        assert 1 <= len(receiver.received) <= 4
    finally:
        receiver.answering.set()
        await fast.stop()


async def test_rotating_the_secret_signs_with_both_for_the_overlap(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["product.created"])
    rotated = await api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=owner.headers)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != hook["secret"]
    await Inventory(api, owner).product()
    (message,) = await receiver.wait_for(1)
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], new_secret):
        Webhook(secret).verify(message.body, message.headers)


async def test_replay_sends_past_events_again_with_their_ids(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    hook = await subscribe(api, owner, receiver.url, ["product.*"])
    inv = Inventory(api, owner)
    for _ in range(3):
        await inv.product()
    first = await receiver.wait_for(3)
    replay = await api.post(
        f"/api/v1/webhooks/{hook['id']}/replay",
        json={"after": since.isoformat()},
        headers=owner.headers,
    )
    assert replay.status_code == 202, replay.text
    assert replay.json() == {"queued": 3}
    again = (await receiver.wait_for(6))[3:]
    assert sorted(m.webhook_id for m in again) == sorted(m.webhook_id for m in first)
    backwards = await api.post(
        f"/api/v1/webhooks/{hook['id']}/replay",
        json={"after": since.isoformat(), "until": (since - timedelta(days=1)).isoformat()},
        headers=owner.headers,
    )
    assert backwards.status_code == 422
    assert backwards.json()["error"]["request_id"]


async def test_webhook_routes_refuse_bad_input_clearly(
    api: httpx.AsyncClient, owner: Tenant
) -> None:
    for body in [
        {"url": "ftp://hooks.example.com/x", "events": ["*"]},
        {"url": "https://hooks.example.com/x", "events": []},
        {"url": "https://hooks.example.com/x", "events": ["stock.nope"]},
        {"url": "https://hooks.example.com/x", "events": ["nope.*"]},
        {"url": "https://user:pw@hooks.example.com/x", "events": ["*"]},
        {"url": "https://hooks.example.com/x", "events": ["*"], "extra": 1},
        {"url": "https://hooks.example.com/\u0000", "events": ["*"]},
        {"url": "https://hooks.example.com/" + "x" * 3000, "events": ["*"]},
        # A host label over 63 characters cannot be resolved at all (found by Schemathesis).
        {"url": "HTTPS://" + "0" * 2000, "events": ["*"]},
        {"url": "https://" + "a" * 70 + ".example.com/x", "events": ["*"]},
        # Not ASCII: the IDNA host and a percent-encoded path are what can be sent.
        {"url": "https://bücher.example/hook", "events": ["*"]},
        {"url": "https://hooks.example.com/ü", "events": ["*"]},
    ]:
        response = await api.post("/api/v1/webhooks", json=body, headers=owner.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["request_id"]
    stale = await subscribe(api, owner, "https://hooks.example.com/x", ["stock.*"])
    for replay in [{"after": 1700000000}, {"after": "yesterday"}, {"after": "2026-01-01T00:00"}]:
        response = await api.post(
            f"/api/v1/webhooks/{stale['id']}/replay", json=replay, headers=owner.headers
        )
        assert response.status_code == 422, (replay, response.text)
    response = await api.patch(
        f"/api/v1/webhooks/{stale['id']}",
        json={"description": "x"},
        headers={**owner.headers, "If-Match": '"99"'},
    )
    assert response.status_code == 412
    missing = await api.get(
        "/api/v1/webhooks/00000000-0000-7000-8000-000000000000", headers=owner.headers
    )
    assert missing.status_code == 404
    # Two deletes at once: one deletes, the other finds nothing (never a 500).
    deletes = await asyncio.gather(
        *(api.delete(f"/api/v1/webhooks/{stale['id']}", headers=owner.headers) for _ in range(2))
    )
    assert sorted(response.status_code for response in deletes) == [204, 404]


async def test_private_and_metadata_addresses_are_refused_without_the_setting(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    # The shared test app keeps the production default: private targets refused.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/hook",
        # IPv6 forms that lead to private IPv4 addresses (NAT64, 6to4, IPv4-compatible), and
        # deprecated site-local addresses.
        "http://[64:ff9b::a00:5]/hook",
        "http://[2002:a00:1::1]/hook",
        "http://[::127.0.0.1]/hook",
        "http://[fec0::1]/hook",
    ]:
        response = await client.post(
            "/api/v1/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.headers
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["details"] == {"field": "url"}
    # At delivery time too (a public name may later resolve to a private address): the
    # sender refuses to connect, and the receiver on the loopback hears nothing.
    sender = Sender(allow_private=False, connect_timeout=2, timeout=5, max_connections=2)
    try:
        outcome = await sender.send(
            receiver.url, message_id="msg_1", body=b"{}", secrets=["whsec_" + "A" * 43 + "="]
        )
    finally:
        await sender.close()
    assert outcome.status_code is None and outcome.error is not None
    assert outcome.error.startswith("refused")
    assert receiver.received == []
    # Whatever else goes wrong in an attempt is its outcome, never an exception out of the
    # sender (which would leave the delivery unsettled): here a URL httpcore cannot encode.
    sender = Sender(allow_private=True, connect_timeout=2, timeout=5, max_connections=2)
    try:
        odd = await sender.send(
            receiver.url + "/ü", message_id="msg_2", body=b"{}", secrets=["whsec_" + "A" * 43]
        )
    finally:
        await sender.close()
    assert odd.status_code is None and odd.error is not None and len(odd.error) <= 200


async def test_webhook_tables_are_walled_by_tenant(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver, app_db: asyncpg.Connection
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["product.created"])
    await Inventory(api, owner).product()
    await settled(api, owner, hook["id"], 1)
    other = await signup(api)
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(other.id))
        for table in ("webhook_endpoint", "webhook_delivery", "webhook_attempt", "event"):
            assert await app_db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(owner.id))
        assert await app_db.fetchval("SELECT count(*) FROM webhook_delivery") == 1


async def test_support_trace_shows_a_requests_events_and_deliveries_without_their_data(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver, staff_token: str
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["stock.changed"])
    inv = Inventory(api, owner)
    sku, loc = (await inv.product(sku="TRACE-ME"))["sku"], (await inv.location())["code"]
    receipt = await inv.move(sku, loc, "receipt", 3)
    (message,) = await receiver.wait_for(1)
    await settled(api, owner, hook["id"], 1)

    request_id = receipt.headers["x-request-id"]
    trace = await api.get(f"/api/v1/support/requests/{request_id}", headers=bearer(staff_token))
    assert trace.status_code == 200, trace.text
    body = trace.json()
    # The receipt wrote stock.changed and stock.restocked; the endpoint takes the first only.
    assert [(c["type"], c["id"] == message.webhook_id) for c in body["changes"]] == [
        ("stock.changed", True),
        ("stock.restocked", False),
    ]
    (delivery,) = body["deliveries"]
    assert (delivery["event_id"], delivery["webhook_id"]) == (message.webhook_id, hook["id"])
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "delivered",
        1,
        200,
    )
    assert "TRACE-ME" not in trace.text and receiver.url not in trace.text


async def test_delivery_metrics_parse_as_prometheus_text(
    api: httpx.AsyncClient, owner: Tenant, receiver: Receiver
) -> None:
    hook = await subscribe(api, owner, receiver.url, ["product.created"])
    receiver.statuses = [500]
    await Inventory(api, owner).product()
    await settled(api, owner, hook["id"], 1)
    families = {
        family.name: family
        for family in text_string_to_metric_families((await api.get("/metrics")).text)
    }
    outcomes = {
        sample.labels["outcome"]
        for sample in families["stockyard_webhook_deliveries"].samples
        if sample.name.endswith("_total")
    }
    assert {"delivered", "retrying"} <= outcomes
    assert "stockyard_webhook_due_deliveries" in families
    assert families["stockyard_webhook_delivery_latency_seconds"].samples
