"""Several API nodes on one database and one Redis: two `stockyard serve` processes on their
own ports (their own worker pools, key caches and webhook dispatchers), with a round-robin
client in front, as a load balancer would spread a client's requests."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockyard.core.settings import Settings
from tests.support.cli import run_cli
from tests.support.helpers import Tenant, bearer, signup
from tests.support.inventory import Inventory
from tests.support.receiver import Receiver
from tests.support.serve import free_port, serve_env, start_serve
from tests.support.services import TestServices

pytestmark = pytest.mark.nodes

NODES = 2


class RoundRobin:
    """One client spreading its requests over the nodes in turn."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self._turn = itertools.cycle(clients)

    async def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return await next(self._turn).request(method, path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def nodes(
    services: TestServices, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[httpx.AsyncClient]]:
    env = serve_env(services, signing_key_cache_seconds="0.2", jwks_max_age_seconds="1")
    workdir: Path = tmp_path_factory.mktemp("nodes")
    ports = [free_port() for _ in range(NODES)]
    servers = [
        await start_serve(
            {**env, "STOCKYARD_NODE_NAME": f"node-{index}"}, port=port, workers=1, cwd=workdir
        )
        for index, port in enumerate(ports)
    ]
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) for port in ports]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            await asyncio.wait_for(server.wait(), 60)


async def test_the_rate_limit_is_one_budget_across_nodes(
    nodes: list[httpx.AsyncClient], settings: Settings
) -> None:
    tenant = await signup(nodes[0])
    code, output = await run_cli(
        settings, "tenants", "set-limit", tenant.slug, "--per-minute", "6", "--burst", "6"
    )
    assert code == 0, output
    balancer = RoundRobin(nodes)
    statuses = [
        (await balancer.request("GET", "/api/v1/me", headers=tenant.headers)).status_code
        for _ in range(8)
    ]
    # Six in all, whichever node answered: a budget split across nodes is still one budget.
    assert statuses == [200] * 6 + [429] * 2


async def test_a_token_revoked_on_one_node_fails_on_the_other_at_once(
    nodes: list[httpx.AsyncClient],
) -> None:
    a, b = nodes
    tenant = await signup(a)
    assert (await b.get("/api/v1/me", headers=tenant.headers)).status_code == 200
    revoked = await a.post("/api/v1/auth/revoke", data={"token": tenant.refresh_token})
    assert revoked.status_code == 200
    after = await b.get("/api/v1/me", headers=tenant.headers)
    assert after.status_code == 401, after.text
    assert (await a.get("/api/v1/me", headers=tenant.headers)).status_code == 401


async def test_a_key_rotated_is_used_by_one_node_and_trusted_by_the_other(
    nodes: list[httpx.AsyncClient], settings: Settings
) -> None:
    a, b = nodes
    before = {key["kid"] for key in (await b.get("/.well-known/jwks.json")).json()["keys"]}
    code, output = await run_cli(settings, "keys", "rotate", "--now")
    assert code == 0, output
    added: set[str] = set()
    for _ in range(50):  # published by node B within its key-cache period
        added = {
            key["kid"] for key in (await b.get("/.well-known/jwks.json")).json()["keys"]
        } - before
        if added:
            break
        await asyncio.sleep(0.1)
    (newest,) = added
    tenant: Tenant | None = None
    for _ in range(50):  # each node reloads its key set within its cache period (0.2 s)
        tenant = await signup(a)
        if jwt.get_unverified_header(tenant.access_token)["kid"] == newest:
            break
        await asyncio.sleep(0.1)
    assert tenant is not None
    assert jwt.get_unverified_header(tenant.access_token)["kid"] == newest
    assert (await b.get("/api/v1/me", headers=bearer(tenant.access_token))).status_code == 200


async def test_webhook_deliveries_are_not_duplicated_across_nodes(
    nodes: list[httpx.AsyncClient],
) -> None:
    receiver = await Receiver().start()
    try:
        tenant = await signup(nodes[0])
        subscribed = await nodes[1].post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["product.created"]},
            headers=tenant.headers,
        )
        assert subscribed.status_code == 201, subscribed.text
        # Writes through both nodes; both nodes' dispatchers compete for the deliveries.
        for index in range(40):
            await Inventory(nodes[index % NODES], tenant).product()
        await receiver.wait_for(40)
        await asyncio.sleep(1.0)  # anything sent twice would have arrived by now
        counts = Counter(message.webhook_id for message in receiver.received)
        assert len(counts) == 40 and set(counts.values()) == {1}
    finally:
        await receiver.stop()


async def test_each_nodes_metrics_say_which_node_they_come_from(
    nodes: list[httpx.AsyncClient],
) -> None:
    for index, client in enumerate(nodes):
        families = {
            family.name: family
            for family in text_string_to_metric_families((await client.get("/metrics")).text)
        }
        (sample,) = families["stockyard_node_info"].samples
        assert sample.labels["node"] == f"node-{index}" and sample.value == 1
