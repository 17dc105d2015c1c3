"""`stockyard backup` while the API serves, and `stockyard restore` into a fresh target: a new
embedded data directory when the suite runs embedded, a new database on the same server when
it runs against an external PostgreSQL (`.ci/run`'s second pass). The API started on the
restored database finds every row the backup counted, and tokens keep their state."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from stockyard.core.embedded import EmbeddedServices
from stockyard.core.settings import Settings
from stockyard.migrations.backup import pg_tool
from tests.conftest import make_settings, running_app
from tests.support.helpers import Tenant, bearer, password_login, refresh, signup
from tests.support.inventory import Inventory
from tests.support.services import TestServices

EXTERNAL = bool(os.environ.get("STOCKYARD_TEST_DATABASE_URL"))


async def _stockyard(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The real command in a process of its own (the API in this one keeps serving)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockyard.cli", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


def _env(settings: Settings, **values: str) -> dict[str, str]:
    assert settings.secret_key is not None and settings.redis_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_")}
    env.update(
        STOCKYARD_REDIS_URL=settings.redis_url,
        STOCKYARD_SECRET_KEY=settings.secret_key.get_secret_value(),
        STOCKYARD_LOG_LEVEL="WARNING",
    )
    env.update(values)
    return env


class Target:
    """Where a restore goes: an empty embedded data directory, or an empty database."""

    def __init__(self, services: TestServices, workdir: Path) -> None:
        self.services = services
        self.data_dir = workdir / "restored"
        self.name = f"{services.database_name}_r{secrets.token_hex(2)}"
        self.embedded: EmbeddedServices | None = None

    @property
    def external_url(self) -> str:
        return make_url(self.services.database_url).set(database=self.name).render_as_string(False)

    async def create(self) -> dict[str, str]:
        if not EXTERNAL:
            return {"STOCKYARD_DATA_DIR": str(self.data_dir)}
        connection = await asyncpg.connect(self.services.admin_dsn)
        try:
            await connection.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await connection.close()
        return {"STOCKYARD_DATABASE_URL": self.external_url}

    def database_url(self) -> str:
        """The restored database, for the API started on it (the embedded one started here)."""
        if not EXTERNAL:
            self.embedded = EmbeddedServices(self.data_dir)
            return self.embedded.start_postgres()
        return self.external_url

    async def drop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if EXTERNAL:
            connection = await asyncpg.connect(self.services.admin_dsn)
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await connection.close()


@pytest.fixture
async def target(services: TestServices, tmp_path: Path) -> AsyncIterator[Target]:
    made = Target(services, tmp_path)
    yield made
    await made.drop()


async def _as_sql(backup: Path, workdir: Path) -> str:
    """The dump as the SQL it restores (pg_restore to a file)."""
    with tarfile.open(backup) as archive:
        archive.extract("database.pgdump", workdir, filter="data")
    tool = pg_tool("pg_restore", 0)
    process = await asyncio.create_subprocess_exec(
        str(tool), "--file=-", str(workdir / "database.pgdump"), stdout=asyncio.subprocess.PIPE
    )
    sql, _ = await process.communicate()
    assert process.returncode == 0
    text = sql.decode()
    assert "signing_key" in text
    return text


def _with_revision(backup: Path, copy: Path, revision: str) -> Path:
    with tarfile.open(backup) as source, tarfile.open(copy, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member)
            assert data is not None
            body = data.read()
            if member.name == "manifest.json":
                manifest = json.loads(body)
                manifest["schema_revision"] = revision
                body = json.dumps(manifest).encode()
            member.size = len(body)
            target.addfile(member, io.BytesIO(body))
    return copy


async def _populate(client: httpx.AsyncClient, tenant: Tenant) -> tuple[str, str]:
    inv = Inventory(client, tenant)
    sku, code = (await inv.product())["sku"], (await inv.location())["code"]
    other = (await inv.location())["code"]
    await inv.receive(sku, code, 50)
    await inv.move(sku, code, "issue", 4)
    moved = await inv.post(
        "/transfers", {"sku": sku, "from_location": code, "to_location": other, "quantity": 6}
    )
    assert moved.status_code == 201, moved.text
    held = await inv.post("/reservations", {"sku": sku, "location": code, "quantity": 3})
    assert held.status_code == 201, held.text
    return sku, code


async def test_a_backup_taken_while_serving_restores_whole_with_tokens_in_their_state(
    client: httpx.AsyncClient,
    settings: Settings,
    services: TestServices,
    target: Target,
    tmp_path: Path,
) -> None:
    tenant = await signup(client)
    sku, code = await _populate(client, tenant)
    # A second session of the owner, revoked: it must stay revoked after the restore.
    second = (await password_login(client, slug=tenant.slug, email=tenant.owner_email)).json()
    revoked = await client.post("/api/v1/auth/revoke", data={"token": second["refresh_token"]})
    assert revoked.status_code == 200
    before = await client.get(
        "/api/v1/movements", params={"sku": sku, "limit": 500}, headers=tenant.headers
    )
    acknowledged = {m["id"] for m in before.json()["items"]}

    # Receipts keep coming while the backup runs.
    writing = asyncio.Event()
    written: list[str] = []

    async def writer() -> None:
        inv = Inventory(client, tenant)
        while not writing.is_set():
            response = await inv.move(sku, code, "receipt", 1)
            assert response.status_code == 201, response.text
            written.append(response.json()["movement"]["id"])

    task = asyncio.create_task(writer())
    backup = tmp_path / "stockyard.backup"
    code_, output = await _stockyard(
        _env(settings, STOCKYARD_DATABASE_URL=services.database_url), "backup", str(backup)
    )
    writing.set()
    await task
    assert code_ == 0, output
    assert "dumping movement" in output and "NOT in the backup" in output
    with tarfile.open(backup) as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert sorted(archive.getnames()) == ["database.pgdump", "manifest.json"]
    assert settings.secret_key is not None
    assert backup.stat().st_mode & 0o077 == 0
    # Decompressed to SQL, the dump holds the sealed signing keys and never the key itself.
    assert settings.secret_key.get_secret_value() not in await _as_sql(backup, tmp_path)
    assert written, "the backup must have run while receipts were being written"

    # Without the original key the restore refuses, and touches nothing.
    destination = await target.create()
    wrong = await _stockyard(
        _env(settings, STOCKYARD_SECRET_KEY="another-key-" + "y" * 40, **destination),
        "restore",
        str(backup),
    )
    assert wrong[0] == 1 and "not the key this backup was taken with" in wrong[1]
    # The restore ends with the ledger check, which finds what the source holds: the suite's
    # database keeps a balance other tests corrupt on purpose (tests/inventory), so the check
    # of the source says what the restored copy must say.
    source_check = await _stockyard(
        _env(settings, STOCKYARD_DATABASE_URL=services.database_url), "check"
    )
    drifted = source_check[1].count("\ndrift tenant=") + source_check[1].startswith("drift ")
    restored = await _stockyard(_env(settings, **destination), "restore", str(backup))
    if drifted:
        assert restored[0] == 1 and f"{drifted} balances disagree" in restored[1], restored[1]
    else:
        assert restored[0] == 0, restored[1]
        assert "check: every balance equals its ledger" in restored[1]
    again = await _stockyard(_env(settings, **destination), "restore", str(backup))
    assert again[0] == 1 and "not empty" in again[1]
    # --force replaces what the target holds (here: the same backup, restored over itself).
    forced = await _stockyard(_env(settings, **destination), "restore", "--force", str(backup))
    assert forced[0] == (1 if drifted else 0), forced[1]
    assert "restored " in forced[1]
    # A backup from a newer Stockyard is refused before anything is touched.
    newer = _with_revision(backup, tmp_path / "newer.backup", "9999")
    refused = await _stockyard(_env(settings, **destination), "restore", "--force", str(newer))
    assert refused[0] == 1 and "does not know" in refused[1]

    # The API on the restored database, with a Redis namespace of its own: what it knows of
    # tokens comes from the restored PostgreSQL alone.
    restored_settings = make_settings(
        services,
        database_url=target.database_url(),
        redis_key_prefix=f"restored-{uuid.uuid4().hex[:8]}:",
    )
    owner = await asyncpg.connect(
        make_url(restored_settings.database_url or "").set(drivername="postgresql")
        .render_as_string(False)
    )  # fmt: skip
    try:
        counts = {
            table: await owner.fetchval(f'SELECT count(*) FROM "{table}"')
            for table in manifest["rows"]
        }
    finally:
        await owner.close()
    # Every row the backup's own snapshot counted, and nothing else.
    assert counts == manifest["rows"]
    async with running_app(restored_settings) as (_, api):
        me = await api.get("/api/v1/me", headers=tenant.headers)
        assert me.status_code == 200, me.text
        assert (
            await api.get("/api/v1/me", headers=bearer(second["access_token"]))
        ).status_code == 401
        assert (await refresh(api, second["refresh_token"])).status_code == 400
        history = await api.get(
            "/api/v1/movements", params={"sku": sku, "limit": 500}, headers=tenant.headers
        )
        restored_ids = {m["id"] for m in history.json()["items"]}
        assert acknowledged <= restored_ids
        stock = (await api.get("/api/v1/stock", params={"sku": sku}, headers=tenant.headers)).json()
        ledger_sum = sum(m["delta"] for m in history.json()["items"] if m["location"] == code)
        main = next(item for item in stock["items"] if item["location"] == code)
        assert main["on_hand"] == ledger_sum and main["reserved"] == 3
        audit = await api.get(
            "/api/v1/audit", params={"action": "movement.create"}, headers=tenant.headers
        )
        assert audit.status_code == 200 and audit.json()["items"]
        # The restored install keeps working: a refresh rotates, a new receipt lands.
        rotated = await refresh(api, tenant.refresh_token)
        assert rotated.status_code == 200, rotated.text
        receipt = await api.post(
            "/api/v1/movements",
            json={"sku": sku, "location": code, "kind": "receipt", "quantity": 1},
            headers=bearer(rotated.json()["access_token"]),
        )
        assert receipt.status_code == 201, receipt.text
