"""Webhook dispatchers as processes: one killed mid-send, one with its own disabling rule.
Apart from test_webhooks.py, whose module-wide dispatcher would otherwise share the work."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from stockyard.core.settings import Settings
from tests.conftest import make_settings, running_app
from tests.support.helpers import signup
from tests.support.inventory import Inventory
from tests.support.receiver import Receiver
from tests.support.serve import free_port, serve_env, start_serve
from tests.support.services import TestServices
from tests.webhooks.test_webhooks import DISPATCH, settled, subscribe


async def test_a_delivery_in_flight_when_the_api_is_killed_is_sent_after_restart(
    services: TestServices, settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    env = serve_env(
        services,
        rate_limit_per_minute="1000000",
        rate_limit_burst="1000000",
        webhook_timeout_seconds="1",
    )
    port = free_port()
    server = await start_serve(env, port=port, workers=1, cwd=tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            tenant = await signup(api)
            hook = await subscribe(api, tenant, receiver.url, ["product.created"])
            receiver.answering.clear()  # the first attempt reaches the receiver, unanswered
            created = await Inventory(api, tenant).product()
        (first,) = await receiver.wait_for(1)
        server.send_signal(signal.SIGKILL)  # no shutdown, no settling: gone mid-send
        await server.wait()
        receiver.answering.set()

        server = await start_serve(env, port=port, workers=1, cwd=tmp_path)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            # The claim's lease runs out and the new process sends the same message.
            received = await receiver.wait_for(2, seconds=60)
            assert received[1].webhook_id == first.webhook_id
            payload = Webhook(hook["secret"]).verify(received[1].body, received[1].headers)
            assert payload["data"]["id"] == created["id"]
            (delivery,) = await settled(api, tenant, hook["id"], 1)
        assert delivery["state"] == "delivered"
        # The killed attempt was never settled; the one after restart was.
        assert [a["status_code"] for a in delivery["attempts"]] == [200]
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), 60)


async def test_an_endpoint_failing_for_longer_than_allowed_is_disabled(
    services: TestServices, settings: Settings, receiver: Receiver
) -> None:
    # Disabled once deliveries have failed this long (here: at once) with no success between.
    strict = make_settings(services, **{**DISPATCH, "webhook_disable_after_hours": 1e-9})
    async with running_app(strict) as (_, client):
        tenant = await signup(client)
        hook = await subscribe(client, tenant, receiver.url, ["product.created"])
        receiver.statuses = [500] * 10
        await Inventory(client, tenant).product()
        for _ in range(200):
            endpoint = (
                await client.get(f"/api/v1/webhooks/{hook['id']}", headers=tenant.headers)
            ).json()
            if not endpoint["enabled"]:
                break
            await asyncio.sleep(0.05)
        assert endpoint["disabled_reason"] == "failing"
