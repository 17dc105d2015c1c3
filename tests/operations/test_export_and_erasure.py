"""A tenant's data on request: exported (only its rows, every table, counts equal to a direct
count as that tenant) and erased (zero rows of it in every tenant table, walked from the
catalog, the other tenant untouched)."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from stockyard.core.settings import Settings
from stockyard.migrations.backup import BackupError, tool_major
from stockyard.operations.service import NOT_EXPORTED, OMITTED_COLUMNS
from tests.support.cli import run_cli
from tests.support.crew import add_client, add_user
from tests.support.helpers import PASSWORD, Tenant, bearer, password_login, signup
from tests.support.inventory import Inventory

TENANT_TABLES = """
SELECT c.relname AS name, CASE WHEN c.relname = 'tenant' THEN 'id' ELSE 'tenant_id' END AS col
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND (c.relname = 'tenant' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
       AND a.attname = 'tenant_id' AND NOT a.attisdropped))
ORDER BY 1
"""
# What a tenant export holds: every tenant table but those NOT_EXPORTED names. A new table
# fails this list until someone decides what of it leaves in an export.
EXPORTED = {
    "api_client",
    "app_user",
    "audit_event",
    "balance",
    "event",
    "location",
    "movement",
    "product",
    "reservation",
    "tenant",
    "token_family",
    "webhook_attempt",
    "webhook_delivery",
    "webhook_endpoint",
}


async def _populate(client: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    """Stock, users, a client and a webhook; returns the secrets they were given (none may
    appear in an export)."""
    inv = Inventory(client, tenant)
    skus = [(await inv.product())["sku"] for _ in range(3)]
    codes = [(await inv.location())["code"] for _ in range(2)]
    for sku in skus:
        await inv.receive(sku, codes[0], 20)
    await inv.move(skus[0], codes[0], "issue", 3)
    transfer = await inv.post(
        "/transfers",
        {"sku": skus[1], "from_location": codes[0], "to_location": codes[1], "quantity": 5},
    )
    assert transfer.status_code == 201, transfer.text
    held = await inv.post("/reservations", {"sku": skus[2], "location": codes[0], "quantity": 2})
    assert held.status_code == 201, held.text
    await add_user(client, tenant, "member")
    _, client_secret, _ = await add_client(client, tenant, ["inventory:read"])
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/export", "events": ["stock.*"]},
        headers=tenant.headers,
    )
    assert hook.status_code == 201, hook.text
    return [client_secret, hook.json()["secret"], tenant.refresh_token, PASSWORD]


async def _counts_as(app_db: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
    """Rows of each tenant table as the app role sees them inside the tenant's context."""
    tables = await app_db.fetch(TENANT_TABLES)
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
        return {
            row["name"]: await app_db.fetchval(f'SELECT count(*) FROM "{row["name"]}"')
            for row in tables
            if row["name"] in EXPORTED
        }


async def _rows_of(owner_db: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
    """Rows carrying the id in every tenant table, counted by the owner (a superuser here:
    no row-level security in the way)."""
    return {
        row["name"]: await owner_db.fetchval(
            f'SELECT count(*) FROM "{row["name"]}" WHERE "{row["col"]}" = $1', tenant_id
        )
        for row in await owner_db.fetch(TENANT_TABLES)
    }


def _plain_text(data: bytes) -> str:
    """Every member of the zip, decompressed: what a reader of the export can see."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(archive.read(name).decode() for name in archive.namelist())


def _read_export(data: bytes) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        tables = {
            name.removesuffix(".jsonl"): [
                json.loads(line) for line in archive.read(name).decode().splitlines() if line
            ]
            for name in archive.namelist()
            if name.endswith(".jsonl")
        }
    return manifest, tables


async def test_every_tenant_table_is_exported_or_named_with_its_reason(
    owner_db: asyncpg.Connection,
) -> None:
    catalog = {row["name"] for row in await owner_db.fetch(TENANT_TABLES)}
    assert catalog == EXPORTED | set(NOT_EXPORTED)


async def test_an_owner_exports_exactly_their_tenants_rows(
    client: httpx.AsyncClient, app_db: asyncpg.Connection
) -> None:
    mine, theirs = await signup(client), await signup(client)
    my_secrets = await _populate(client, mine)
    await _populate(client, theirs)
    response = await client.get("/api/v1/tenant/export", headers=mine.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    manifest, tables = _read_export(response.content)
    assert set(tables) == EXPORTED
    expected = await _counts_as(app_db, mine.id)
    assert manifest["counts"] == expected
    assert {name: len(rows) for name, rows in tables.items()} == expected
    assert expected["movement"] >= 6 and expected["reservation"] == 1
    assert tables["tenant"] == [tables["tenant"][0]] and tables["tenant"][0]["id"] == str(mine.id)
    for name, rows in tables.items():
        column = "id" if name == "tenant" else "tenant_id"
        assert {row[column] for row in rows} <= {str(mine.id)}, name
        for omitted in OMITTED_COLUMNS.get(name, ()):
            assert all(omitted not in row for row in rows), (name, omitted)
    text = _plain_text(response.content)
    assert theirs.slug not in text and str(theirs.id) not in text and mine.slug in text
    for secret in my_secrets:
        assert secret not in text
    assert "$argon2" not in text
    assert set(manifest["not_exported"]) == set(NOT_EXPORTED)


async def test_only_owners_may_export(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for role in ("admin", "member", "viewer"):
        _, token = await add_user(client, tenant, role)
        refused = await client.get("/api/v1/tenant/export", headers=bearer(token))
        assert refused.status_code == 403, role
    _, _, client_token = await add_client(client, tenant, ["inventory:read"])
    assert (
        await client.get("/api/v1/tenant/export", headers=bearer(client_token))
    ).status_code == 403
    assert (await client.get("/api/v1/tenant/export")).status_code == 401


async def test_the_cli_exports_the_same_rows(
    client: httpx.AsyncClient, settings: Settings, app_db: asyncpg.Connection, tmp_path: Path
) -> None:
    mine, theirs = await signup(client), await signup(client)
    await _populate(client, mine)
    await _populate(client, theirs)
    target = tmp_path / "export.zip"
    code, output = await run_cli(settings, "tenants", "export", mine.slug, str(target))
    assert code == 0, output
    manifest, tables = _read_export(target.read_bytes())
    assert manifest["counts"] == await _counts_as(app_db, mine.id)
    assert all(
        row["id" if name == "tenant" else "tenant_id"] == str(mine.id)
        for name, rows in tables.items()
        for row in rows
    )
    code, output = await run_cli(settings, "tenants", "export", "no-such-tenant", str(target))
    assert code == 1 and "no tenant" in output


async def test_deleting_a_tenant_stops_it_at_once_and_erases_every_row(
    client: httpx.AsyncClient,
    settings: Settings,
    owner_db: asyncpg.Connection,
    app_db: asyncpg.Connection,
) -> None:
    doomed, kept = await signup(client), await signup(client)
    await _populate(client, doomed)
    await _populate(client, kept)
    assert (await client.get("/api/v1/me", headers=doomed.headers)).status_code == 200
    _, _, kept_client = await add_client(client, kept, ["inventory:read"])
    kept_before = await _rows_of(owner_db, kept.id)
    code, output = await run_cli(settings, "tenants", "delete", doomed.slug, "--now")
    assert code == 0, output
    assert "erased; 0 rows" in output
    left = await _rows_of(owner_db, doomed.id)
    assert set(left) == EXPORTED | set(NOT_EXPORTED)
    assert not any(left.values()), left
    assert await _rows_of(owner_db, kept.id) == kept_before
    # The other tenant's sessions and clients live on.
    assert (await client.get("/api/v1/me", headers=kept.headers)).status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(kept_client))).status_code == 200
    assert (await client.get("/api/v1/me", headers=doomed.headers)).status_code == 401
    login = await password_login(client, slug=doomed.slug, email=doomed.owner_email)
    assert login.status_code == 400
    platform = await owner_db.fetch(
        "SELECT action FROM audit_event WHERE tenant_id = $1 AND details->>'tenant_id' = $2",
        uuid.UUID(int=0),
        str(doomed.id),
    )
    assert sorted(row["action"] for row in platform) == ["tenant.delete", "tenant.erase"]
    assert await _counts_as(app_db, kept.id)


async def test_a_deleted_tenant_is_locked_out_until_its_grace_ends_then_purged(
    client: httpx.AsyncClient, settings: Settings, owner_db: asyncpg.Connection
) -> None:
    doomed = await signup(client)
    await _populate(client, doomed)
    _, _, client_token = await add_client(client, doomed, ["inventory:read"])
    code, output = await run_cli(settings, "tenants", "delete", doomed.slug, "--grace-days", "7")
    assert code == 0, output
    # Sign-ins, refreshes, user and client tokens all stop at once; the rows wait.
    assert (await client.get("/api/v1/me", headers=doomed.headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers=bearer(client_token))).status_code == 401
    assert (
        await password_login(client, slug=doomed.slug, email=doomed.owner_email)
    ).status_code == 400
    refreshed = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": doomed.refresh_token},
    )
    assert refreshed.status_code == 400
    assert (await _rows_of(owner_db, doomed.id))["movement"] > 0
    code, output = await run_cli(settings, "tenants", "purge")
    assert code == 0, output
    assert (await _rows_of(owner_db, doomed.id))["movement"] > 0
    await owner_db.execute(
        "UPDATE tenant SET erase_after = now() - interval '1 second' WHERE id = $1", doomed.id
    )
    code, output = await run_cli(settings, "tenants", "purge")
    assert code == 0, output
    assert f"{doomed.slug}: erased" in output
    assert not any((await _rows_of(owner_db, doomed.id)).values())
    # Its slug is free again.
    again = await client.post(
        "/api/v1/tenants",
        json={
            "name": "Again",
            "slug": doomed.slug,
            "owner_email": doomed.owner_email,
            "owner_password": PASSWORD,
        },
    )
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("slug", ["no-such-tenant"])
async def test_deleting_an_unknown_tenant_says_so(settings: Settings, slug: str) -> None:
    code, output = await run_cli(settings, "tenants", "delete", slug, "--now")
    assert code == 1 and "no tenant" in output


def test_pg_tool_versions_are_read_as_distributions_print_them() -> None:
    assert tool_major("pg_dump (PostgreSQL) 16.2") == 16
    assert tool_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)") == 15
    assert tool_major("pg_restore (PostgreSQL) 17.5 (Ubuntu 17.5-1.pgdg24.04+1)") == 17
    with pytest.raises(BackupError):
        tool_major("something else 12")


async def test_a_deleted_tenant_can_be_exported_and_deleted_again_and_redis_failures_say_so(
    client: httpx.AsyncClient, settings: Settings, owner_db: asyncpg.Connection, tmp_path: Path
) -> None:
    doomed = await signup(client)
    await _populate(client, doomed)
    # Redis away while deleting: PostgreSQL has the revocations, but the command says the
    # API nodes may not know yet, and fails so the operator runs it again.
    away = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    code, output = await run_cli(away, "tenants", "delete", doomed.slug)
    assert code == 1 and "Redis is unreachable" in output
    assert (
        await password_login(client, slug=doomed.slug, email=doomed.owner_email)
    ).status_code == 400
    hooks = await owner_db.fetch(
        "SELECT enabled, disabled_reason FROM webhook_endpoint WHERE tenant_id = $1", doomed.id
    )
    assert [(h["enabled"], h["disabled_reason"]) for h in hooks] == [(False, "tenant_deleted")]
    # Exported during its grace period, then deleted again, now for good.
    target = tmp_path / "doomed.zip"
    code, output = await run_cli(settings, "tenants", "export", doomed.slug, str(target))
    assert code == 0, output
    assert _read_export(target.read_bytes())[0]["counts"]["movement"] >= 6
    assert target.stat().st_mode & 0o077 == 0
    code, output = await run_cli(settings, "tenants", "delete", doomed.slug, "--now")
    assert code == 0, output
    assert not any((await _rows_of(owner_db, doomed.id)).values())


async def test_exports_are_limited_per_tenant(client: httpx.AsyncClient, tenant: Tenant) -> None:
    statuses = [
        (await client.get("/api/v1/tenant/export", headers=tenant.headers)).status_code
        for _ in range(4)
    ]
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
