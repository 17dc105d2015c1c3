"""Through PgBouncer in transaction mode (conftest.py): the suite's isolation probe (every
route as every kind of caller, other tenants' ids answering 404; every list of another
tenant), the oversell race, the refresh-token reuse races and the every-writer race, run again
unchanged; and what only a pooler can show, that no server connection carries a tenant from
one transaction into the next (the suite's own check of this borrows every connection of the
app's pool at once, which behind four server connections would wait forever: the probe below
asks PgBouncer's server connections themselves, between the app's transactions)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from stockyard.core.settings import APP_ROLE
from tests.auth.test_tokens import test_reuse_of_a_used_refresh_token_revokes_the_whole_family
from tests.events.test_events import (
    test_every_writer_at_once_every_movement_announced_and_sequences_tell_the_latest,
)
from tests.inventory.test_movements import test_concurrent_issues_never_oversell
from tests.pooler.conftest import SERVER_CONNECTIONS, Bouncer
from tests.security.test_cross_tenant_lists import (
    test_every_list_of_another_tenant_is_free_of_our_rows,
)
from tests.security.test_permission_matrix import test_permission_matrix
from tests.support.helpers import Tenant, password_login, refresh, signup
from tests.support.inventory import Inventory

pytestmark = pytest.mark.pooler

__all__ = [
    "test_concurrent_issues_never_oversell",
    "test_every_list_of_another_tenant_is_free_of_our_rows",
    "test_every_writer_at_once_every_movement_announced_and_sequences_tell_the_latest",
    "test_permission_matrix",
    "test_reuse_of_a_used_refresh_token_revokes_the_whole_family",
]


async def test_signup_sign_in_refresh_and_health_work_through_the_pooler(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    assert app.state.settings.database_pooler == "transaction"
    health = await client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["db"] == "ok"
    tenant = await signup(client)
    again = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    assert again.status_code == 200, again.text
    rotated = await refresh(client, again.json()["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}
    )
    assert me.status_code == 200, me.text


async def test_no_server_connection_carries_a_tenant_between_transactions(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    pgbouncer: Bouncer,
    app: FastAPI,
    owner_db: asyncpg.Connection,
) -> None:
    """While both tenants' requests keep the few server connections busy with tenant-scoped
    transactions, statements sent between those transactions, on the same server
    connections, never see a tenant."""
    database = make_url(app.state.settings.database_url).database
    mine, theirs = Inventory(client, tenant), Inventory(client, other_tenant)
    places = {}
    for inv in (mine, theirs):
        product = await inv.product()
        places[inv] = (product["sku"], (await inv.location())["code"], product["id"])
    probe = await asyncpg.connect(
        host=pgbouncer.host,
        port=pgbouncer.port,
        user=APP_ROLE,
        database=database,
        statement_cache_size=0,
    )
    stop = asyncio.Event()
    seen: list[object] = []
    server_connections: list[int] = []

    async def traffic(inv: Inventory) -> None:
        sku, loc, product_id = places[inv]
        while not stop.is_set():
            answer = await inv.move(sku, loc, "receipt", 1)
            assert answer.status_code == 201, answer.text
            # A SKU's stock and the product read are self-scoped: each its own
            # single-statement transaction.
            assert (await inv.get("/stock", sku=sku)).status_code == 200
            assert (await inv.get(f"/products/{product_id}")).status_code == 200

    async def probing() -> None:
        try:
            for index in range(300):
                seen.append(await probe.fetchval("SELECT current_setting('app.tenant_id', true)"))
                if index % 20 == 0:
                    server_connections.append(
                        await owner_db.fetchval(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = $1 AND usename = $2",
                            database,
                            APP_ROLE,
                        )
                    )
                await asyncio.sleep(0)
        finally:
            stop.set()

    try:
        await asyncio.gather(probing(), *(traffic(inv) for inv in (mine, theirs) for _ in range(4)))
    finally:
        await probe.close()
    assert len(seen) == 300
    assert set(seen) <= {None, ""}, {value for value in seen if value}
    # Eight request loops and the probe shared at most this many server connections.
    assert 0 < max(server_connections) <= SERVER_CONNECTIONS, server_connections


async def test_reuse_detection_under_concurrent_refreshes_through_the_pooler(
    client: httpx.AsyncClient,
) -> None:
    """The suite's reuse race (tests/auth/test_tokens.py), with one refresh fewer than
    PgBouncer has server connections: each reuse revokes the family in a transaction of its
    own, on a second connection, while the other refreshes hold theirs. A storm of more
    concurrent reuses of one token than there are server connections queues in PgBouncer,
    and past the statement timeout answers 503 (seen in CI with 8 on 4 connections): size the
    server pool for it. Ten rounds."""
    concurrent = SERVER_CONNECTIONS - 1
    for _ in range(10):
        tenant = await signup(client)
        responses = await asyncio.gather(
            *(refresh(client, tenant.refresh_token) for _ in range(concurrent))
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [400] * (concurrent - 1), statuses
