"""Isolation is enforced by PostgreSQL itself, for every tenant table, as the app role."""

from __future__ import annotations

import secrets
import uuid

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, PendingRollbackError

from stockyard.core.database import TenantReads, TenantWrites, driver_connection, fetch
from stockyard.core.settings import APP_ROLE
from stockyard.core.tenancy import scope_to_tenant
from stockyard.inventory.models import Location
from tests.support.helpers import Tenant
from tests.support.inventory import Inventory

CATALOG_TENANT_TABLES = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS has_policy,
       (SELECT string_agg(pg_get_expr(p.polqual, p.polrelid), ' ') FROM pg_policy p
          WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation') AS using_expr,
       (SELECT string_agg(pg_get_expr(p.polwithcheck, p.polrelid), ' ') FROM pg_policy p
          WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation') AS check_expr
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                 AND a.attname = 'tenant_id' AND NOT a.attisdropped)
       OR c.relname = 'tenant')
ORDER BY c.relname
"""


async def test_every_tenant_table_has_forced_rls_and_a_tenant_policy(
    owner_db: asyncpg.Connection,
) -> None:
    rows = await owner_db.fetch(CATALOG_TENANT_TABLES)
    assert {row["relname"] for row in rows} >= {
        "tenant",
        "app_user",
        "token_family",
        "refresh_token",
        "api_client",
        "event",
        "webhook_endpoint",
        "webhook_delivery",
        "webhook_attempt",
    }
    for row in rows:
        assert row["relrowsecurity"] and row["relforcerowsecurity"], row["relname"]
        assert row["has_policy"], row["relname"]
        for expr in (row["using_expr"], row["check_expr"]):
            assert expr is not None and "current_setting('app.tenant_id'" in expr, row["relname"]


async def test_tenant_id_leads_every_key_and_index_of_tenant_tables(
    owner_db: asyncpg.Connection,
) -> None:
    rows = await owner_db.fetch(
        """
        SELECT c.relname AS table_name, i.relname AS index_name,
               (SELECT a.attname FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum = x.indkey[0]) AS first_column
        FROM pg_index x
        JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                        AND a.attname = 'tenant_id')
        """
    )
    assert rows
    # Cross-tenant look-ups by design: revocation re-seeding, the expiry sweep, the support
    # trace by request id (and its copies on each audit partition), and the webhook
    # dispatcher's "which tenants have deliveries due".
    cross_tenant = {
        ("token_family", "revoked_at"),
        ("reservation", "expires_at"),
        ("audit_event", "request_id"),
        ("webhook_delivery", "next_attempt_at"),
    }
    offenders = [
        (row["table_name"], row["index_name"])
        for row in rows
        if row["first_column"] != "tenant_id"
        and not any(
            row["table_name"].startswith(table) and row["first_column"] == column
            for table, column in cross_tenant
        )
    ]
    assert offenders == []


@pytest.mark.usefixtures("tenant")
async def test_app_role_without_tenant_sees_no_rows_and_cannot_write(
    app_db: asyncpg.Connection, owner_db: asyncpg.Connection
) -> None:
    tables = [row["relname"] for row in await owner_db.fetch(CATALOG_TENANT_TABLES)]
    # The owner sees the fixture's rows, so zero below means filtered, not empty.
    for table in ("tenant", "app_user", "token_family", "refresh_token"):
        assert await owner_db.fetchval(f"SELECT count(*) FROM {table}") > 0, table
    for table in tables:
        try:
            visible = await app_db.fetchval(f"SELECT count(*) FROM {table}")
        except asyncpg.InsufficientPrivilegeError:
            continue  # audit partitions: reachable only through their parent, which is walled
        assert visible == 0, table
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_db.execute(
            "INSERT INTO tenant (id, slug, name) VALUES ($1, $2, 'x')",
            uuid.uuid4(),
            "no-context-insert",
        )


async def test_insert_with_another_tenants_id_is_refused(
    tenant: Tenant, other_tenant: Tenant, app_db: asyncpg.Connection
) -> None:
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(other_tenant.id))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_db.execute(
                "INSERT INTO app_user (tenant_id, id, email, password_hash, role) "
                "VALUES ($1, $2, 'intruder@example.com', 'x', 'owner')",
                tenant.id,
                uuid.uuid4(),
            )


@pytest.mark.usefixtures("other_tenant")
async def test_tenant_context_shows_only_that_tenants_rows(
    tenant: Tenant, app_db: asyncpg.Connection
) -> None:
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
        tenants = await app_db.fetch("SELECT id FROM tenant")
        users = await app_db.fetch("SELECT tenant_id FROM app_user")
    assert [row["id"] for row in tenants] == [tenant.id]
    assert {row["tenant_id"] for row in users} == {tenant.id}


async def test_pooled_connection_has_no_tenant_after_a_request(
    client: httpx.AsyncClient, tenant: Tenant, app: object
) -> None:
    response = await client.get("/api/v1/me", headers=tenant.headers)
    assert response.status_code == 200
    engine = app.state.services.engine  # type: ignore[attr-defined]
    # Borrow every pooled connection: none may still carry a tenant.
    connections = [await engine.connect() for _ in range(engine.pool.size())]
    try:
        from sqlalchemy import text

        for connection in connections:
            value = await connection.scalar(text("SELECT current_setting('app.tenant_id', true)"))
            assert value in (None, "")
    finally:
        for connection in connections:
            await connection.close()


async def test_driver_statements_follow_the_sessions_transaction_and_its_tenant(
    tenant: Tenant, other_tenant: Tenant, app: object
) -> None:
    """The driver connection a session's statements run on is found once per transaction:
    after a commit, the next transaction's statements run in that transaction, under its
    own tenant, not on the connection the first one gave back."""
    sessionmaker = app.state.services.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        seen = []
        for owner in (tenant, other_tenant):
            scope_to_tenant(session, owner.id)
            # An ORM statement begins the transaction before any driver statement asks.
            await session.execute(text("SELECT 1"))
            current = await (await session.connection()).get_raw_connection()
            first = await driver_connection(session)
            assert first is current.driver_connection
            assert await driver_connection(session) is first
            seen.append([row["id"] for row in await fetch(session, "SELECT id FROM tenant")])
            assert first.is_in_transaction()
            await session.commit()
            assert not first.is_in_transaction()
    assert seen == [[tenant.id], [other_tenant.id]]


async def test_no_driver_statement_runs_after_a_failed_flush_until_rollback(
    tenant: Tenant, app: object
) -> None:
    """A flush that fails outside a savepoint has rolled the transaction back on the server:
    a driver statement then is refused like any other, never run outside a transaction and
    without the tenant on the connection kept for it."""
    sessionmaker = app.state.services.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        scope_to_tenant(session, tenant.id)
        assert [row["id"] for row in await fetch(session, "SELECT id FROM tenant")] == [tenant.id]
        code = f"dup-{secrets.token_hex(3)}"
        for _ in range(2):
            session.add(Location(tenant_id=tenant.id, id=uuid.uuid4(), code=code, name=code))
        with pytest.raises(IntegrityError):
            await session.flush()
        with pytest.raises(PendingRollbackError):
            await fetch(session, "SELECT id FROM tenant")
        await session.rollback()
        assert [row["id"] for row in await fetch(session, "SELECT id FROM tenant")] == [tenant.id]


@pytest.mark.usefixtures("other_tenant")
async def test_read_route_transaction_shows_one_tenant_and_writes_nothing(
    tenant: Tenant, app: object
) -> None:
    """The hot read routes' transaction (TenantReads, on the reader pool) is scoped like a
    session's: its tenant's rows only, and READ ONLY, so a write there fails."""
    pool = app.state.services.reader_pool  # type: ignore[attr-defined]
    reads = TenantReads(pool, tenant.id, timeout=5.0)
    try:
        tenants = await fetch(reads, "SELECT id FROM tenant")
        users = await fetch(reads, "SELECT tenant_id FROM app_user")
        assert [row["id"] for row in tenants] == [tenant.id]
        assert {row["tenant_id"] for row in users} == {tenant.id}
        connection = await reads.connection()
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await connection.execute("UPDATE tenant SET name = name")
    finally:
        await reads.close(commit=False)


async def test_ledger_write_transaction_sees_and_writes_its_tenant_only(
    tenant: Tenant, other_tenant: Tenant, app: object
) -> None:
    """The ledger write routes' transaction (TenantWrites, on the writer pool) is scoped like
    a session's: its tenant's rows only, a row for another tenant is refused by the policy's
    WITH CHECK, and its connection goes back to the pool with no tenant and no transaction."""
    pool = app.state.services.writer_pool  # type: ignore[attr-defined]
    writes = TenantWrites(pool, tenant.id, timeout=5.0)
    try:
        tenants = await fetch(writes, "SELECT id FROM tenant")
        users = await fetch(writes, "SELECT tenant_id FROM app_user")
        assert [row["id"] for row in tenants] == [tenant.id]
        assert {row["tenant_id"] for row in users} == {tenant.id}
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await fetch(
                writes,
                "INSERT INTO location (tenant_id, id, code, name) VALUES (:t, :l, 'X', 'x')",
                {"t": other_tenant.id, "l": uuid.uuid4()},
            )
    finally:
        await writes.close(commit=False)
    async with pool.acquire() as connection:
        assert not connection.is_in_transaction()
        value = await connection.fetchval("SELECT current_setting('app.tenant_id', true)")
        assert value in (None, "")


async def test_the_self_scoped_product_read_sees_its_tenant_only_and_leaves_no_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, app_db: asyncpg.Connection
) -> None:
    """`stockyard_product_in_tenant` (the product GET's one round trip) runs as the app role
    under row-level security: in one tenant it finds that tenant's product and not another's,
    and its tenant setting is gone once it returns, with or without a transaction around it."""
    own = (await Inventory(client, tenant).product())["id"]
    others = (await Inventory(client, other_tenant).product())["id"]
    read = "SELECT id FROM stockyard_product_in_tenant($1, $2)"
    assert await app_db.fetchval(read, tenant.id, uuid.UUID(own)) == uuid.UUID(own)
    assert await app_db.fetchval(read, tenant.id, uuid.UUID(others)) is None
    # Called alone, nothing is left on the connection (a session-wide setting would be).
    assert await app_db.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(other_tenant.id))
        assert await app_db.fetchval(read, tenant.id, uuid.UUID(own)) == uuid.UUID(own)
        setting = await app_db.fetchval("SELECT current_setting('app.tenant_id', true)")
        assert setting == str(other_tenant.id)


async def test_the_self_scoped_history_read_sees_its_tenant_only_and_leaves_no_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, app_db: asyncpg.Connection
) -> None:
    """`stockyard_product_movements_in_tenant` (a SKU's history page in one round trip) runs
    as the app role under row-level security: in one tenant it reads that tenant's movements
    of the SKU and none of another tenant's same SKU, first page and after a cursor, and its
    tenant setting is gone once it returns, alone or inside another tenant's transaction."""
    own, others = Inventory(client, tenant), Inventory(client, other_tenant)
    sku = "SHARED-SKU"
    for inv, quantities in ((own, (1, 2, 3)), (others, (40, 50))):
        await inv.product(sku)
        code = (await inv.location())["code"]
        for quantity in quantities:
            await inv.receive(sku, code, quantity)
    read = (
        "SELECT delta, occurred_at, id "
        "FROM stockyard_product_movements_in_tenant($1, $2, $3, $4, $5)"
    )
    first = await app_db.fetch(read, tenant.id, sku, None, None, 2)
    assert [row["delta"] for row in first] == [1, 2]
    after = await app_db.fetch(read, tenant.id, sku, first[-1]["occurred_at"], first[-1]["id"], 9)
    assert [row["delta"] for row in after] == [3]
    theirs = await app_db.fetch(read, other_tenant.id, sku, None, None, 9)
    assert [row["delta"] for row in theirs] == [40, 50]
    assert await app_db.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(other_tenant.id))
        assert len(await app_db.fetch(read, tenant.id, sku, None, None, 9)) == 3
        setting = await app_db.fetchval("SELECT current_setting('app.tenant_id', true)")
        assert setting == str(other_tenant.id)


async def test_the_self_scoped_stock_read_sees_its_tenant_only_and_leaves_no_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, app_db: asyncpg.Connection
) -> None:
    """`stockyard_product_stock_in_tenant` (a SKU's stock page in one round trip) runs as the
    app role under row-level security: in one tenant it reads that tenant's balances of the
    SKU and none of another tenant's same SKU, first page and after a cursor, and its tenant
    setting is gone once it returns, alone or inside another tenant's transaction."""
    own, others = Inventory(client, tenant), Inventory(client, other_tenant)
    sku = "SHARED-STOCK"
    for inv, quantities in ((own, (1, 2, 3)), (others, (40, 50))):
        await inv.product(sku)
        for place, quantity in enumerate(quantities):
            await inv.receive(sku, (await inv.location(f"BIN-{place}"))["code"], quantity)
    read = (
        "SELECT on_hand, sku, location FROM stockyard_product_stock_in_tenant($1, $2, $3, $4, $5)"
    )
    first = await app_db.fetch(read, tenant.id, sku, None, None, 2)
    assert [(row["location"], row["on_hand"]) for row in first] == [("BIN-0", 1), ("BIN-1", 2)]
    after = await app_db.fetch(read, tenant.id, sku, sku, "BIN-1", 9)
    assert [row["on_hand"] for row in after] == [3]
    theirs = await app_db.fetch(read, other_tenant.id, sku, None, None, 9)
    assert [row["on_hand"] for row in theirs] == [40, 50]
    assert await app_db.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(other_tenant.id))
        assert len(await app_db.fetch(read, tenant.id, sku, None, None, 9)) == 3
        setting = await app_db.fetchval("SELECT current_setting('app.tenant_id', true)")
        assert setting == str(other_tenant.id)


@pytest.mark.parametrize("route", ["stock", "product", "receipt", "refused issue"])
async def test_driver_pools_connections_have_no_tenant_after_a_request(
    client: httpx.AsyncClient, tenant: Tenant, app: object, route: str
) -> None:
    """After a read in a transaction (stock), a self-scoped statement (the product GET), or
    a ledger write that commits (a receipt) or rolls back (an issue beyond the stock), the
    driver pools' connections carry no tenant and no open transaction."""
    inv = Inventory(client, tenant)
    if route == "product":
        product_id = (await inv.product())["id"]
        response = await client.get(f"/api/v1/products/{product_id}", headers=tenant.headers)
    elif route == "stock":
        response = await client.get("/api/v1/stock", headers=tenant.headers)
    else:
        sku, code = (await inv.product())["sku"], (await inv.location())["code"]
        kind = "receipt" if route == "receipt" else "issue"
        response = await inv.move(sku, code, kind, 5)
    assert response.status_code == {"receipt": 201, "refused issue": 409}.get(route, 200)
    services = app.state.services  # type: ignore[attr-defined]
    pool = services.reader_pool if route in ("stock", "product") else services.writer_pool
    assert pool.get_size() >= 1  # the request above ran on this pool
    async with pool.acquire() as connection:
        assert not connection.is_in_transaction()
        value = await connection.fetchval("SELECT current_setting('app.tenant_id', true)")
        assert value in (None, "")


async def test_app_role_is_least_privileged(owner_db: asyncpg.Connection) -> None:
    role = await owner_db.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles "
        "WHERE rolname = $1",
        APP_ROLE,
    )
    assert role is not None
    assert role["rolsuper"] is False
    assert role["rolbypassrls"] is False
    assert role["rolcreatedb"] is False and role["rolcreaterole"] is False
    owned = await owner_db.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = $1",
        APP_ROLE,
    )
    assert owned == 0


async def test_app_role_cannot_change_the_ledger_of_signing_keys(
    app_db: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_db.execute("DELETE FROM signing_key")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_db.execute("UPDATE signing_key SET retires_at = now()")


async def test_another_tenants_token_sees_only_its_own_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """The user and product queries name no tenant: only row-level security keeps each
    tenant's lists to its own rows (with RLS off, each list would show both tenants')."""
    mine, theirs = f"ISO-{secrets.token_hex(4)}", f"ISO-{secrets.token_hex(4)}"
    for sku, owner in ((mine, tenant), (theirs, other_tenant)):
        created = await client.post(
            "/api/v1/products", json={"sku": sku, "name": "x"}, headers=owner.headers
        )
        assert created.status_code == 201
    for me, them in ((tenant, other_tenant), (other_tenant, tenant)):
        users = (await client.get("/api/v1/users", headers=me.headers)).json()["items"]
        emails = {user["email"] for user in users}
        assert me.owner_email in emails and them.owner_email not in emails
        products = (await client.get("/api/v1/products", headers=me.headers)).json()["items"]
        skus = {product["sku"] for product in products}
        assert (mine in skus) is (me is tenant)
        assert (theirs in skus) is (me is other_tenant)
