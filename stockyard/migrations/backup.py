"""`stockyard backup` and `stockyard restore`: a logical backup of the whole database with
PostgreSQL's own tools, and its restore into an empty database.

A backup is one tar file: `database.pgdump` (pg_dump's custom format, compressed, taken in
one snapshot while the API serves) and `manifest.json` (versions, the schema revision, row
counts, and a fingerprint of STOCKYARD_SECRET_KEY). The key itself is never written: the
signing keys in the database are encrypted with it, so a restore refuses to run without the
same key. Roles live outside a database; the restore creates Stockyard's roles first, so the
grants, policies and the definer look-ups' owners come back as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from stockyard import __version__
from stockyard.core.settings import APP_ROLE, SUPPORT_ROLE, Settings
from stockyard.migrations.rls import DEFINER_ROLE

FORMAT = "stockyard-backup/1"
DUMP_MEMBER = "database.pgdump"
MANIFEST_MEMBER = "manifest.json"

# Stockyard's roles, as the migrations create them (0001, 0003): a restore needs them before
# the objects that are granted to or owned by them.
ROLES = {
    APP_ROLE: "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT",
    DEFINER_ROLE: "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
    SUPPORT_ROLE: "NOLOGIN NOSUPERUSER NOBYPASSRLS",
}


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


def key_fingerprint(secret_key: str) -> str:
    """Names the key a backup needs without revealing it (an HMAC under the key)."""
    return hmac.new(secret_key.encode(), b"stockyard-backup-key-check", hashlib.sha256).hexdigest()[
        :24
    ]


def tool_major(version_output: str) -> int:
    """The major version in a tool's `--version` line: `pg_dump (PostgreSQL) 16.2`, or a
    distribution's `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`."""
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", version_output)
    if not found:
        raise BackupError(f"cannot read a PostgreSQL version from {version_output!r}")
    return int(found.group(1))


def pg_tool(name: str, server_major: int) -> Path:
    """`pg_dump` or `pg_restore`, no older than the server: the embedded install's own
    (pgserver's), else the one on PATH. An older tool cannot read a newer server."""
    candidates: list[Path] = []
    try:
        from pgserver import _commands  # the embedded install ships its PostgreSQL's tools

        candidates.append(Path(_commands.POSTGRES_BIN_PATH) / name)
    except ImportError:
        pass
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    found = []
    for candidate in candidates:
        if not candidate.exists():
            continue
        output = subprocess.run(
            [str(candidate), "--version"], capture_output=True, text=True, check=True
        ).stdout
        found.append((candidate, tool_major(output)))
        if tool_major(output) >= server_major:
            return candidate
    seen = ", ".join(f"{path} ({major})" for path, major in found) or "none"
    raise BackupError(
        f"{name} for PostgreSQL {server_major} or newer is needed (found: {seen}); install the "
        f"PostgreSQL {server_major} client tools"
    )


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    schema_revision: str | None
    tenants: int
    rows: dict[str, int]


async def server_version(dsn: str) -> tuple[int, str]:
    """The server's major version (which pg_dump and pg_restore it takes) and full version."""
    connection = await asyncpg.connect(dsn)
    try:
        number = int(await connection.fetchval("SHOW server_version_num"))
        return number // 10000, str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def database_facts(dsn: str) -> DatabaseFacts:
    """What a restore prints of what came back: the schema revision, tenants and the exact
    row count of every table, read by the owner."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await _table_counts(connection)
        revision = (
            await connection.fetchval("SELECT version_num FROM alembic_version")
            if "alembic_version" in rows
            else None
        )
        return DatabaseFacts(revision, rows.get("tenant", 0), rows)
    finally:
        await connection.close()


def _libpq(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password (which goes in PGPASSWORD, not in the process list)."""
    from sqlalchemy.engine import make_url

    url = make_url(dsn)
    env = {"PGPASSWORD": url.password} if url.password else {}
    return url.set(password=None).render_as_string(hide_password=False), env


async def _run_with_progress(
    command: list[str], env: dict[str, str], progress: Callable[[str], None], pattern: str
) -> None:
    """Run a PostgreSQL tool, passing the lines of its --verbose output that say what it is
    working on to `progress`; any failure ends with the tool's own last words."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    tail: list[str] = []
    wanted = re.compile(pattern)
    async for raw in process.stderr:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-19:], line]
        found = wanted.search(line)
        if found:
            progress(found.group(1))
    if await process.wait() != 0:
        raise BackupError(f"{Path(command[0]).name} failed:\n" + "\n".join(tail))


async def _table_counts(connection: asyncpg.Connection) -> dict[str, int]:
    tables = [
        row["relname"]
        for row in await connection.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY 1"
        )
    ]
    return {
        table: int(await connection.fetchval(f'SELECT count(*) FROM "{table}"')) for table in tables
    }


async def write_backup(
    dsn: str, settings: Settings, path: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """pg_dump of the whole database into a tar beside its manifest; returns the manifest.
    The manifest's counts and the dump are one snapshot: a transaction exports it, counts in
    it, and pg_dump reads the same one (`--snapshot`), however many writes go on meanwhile."""
    assert settings.secret_key is not None
    # Only the version here: the counts come from inside the dump's own snapshot below.
    major, version_text = await server_version(dsn)
    dump_tool = pg_tool("pg_dump", major)
    target, env = _libpq(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await connection.fetchval("SELECT pg_export_snapshot()")
            rows = await _table_counts(connection)
            revision = await connection.fetchval("SELECT version_num FROM alembic_version")
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".stockyard-backup-") as work:
                dump = Path(work) / DUMP_MEMBER
                await _run_with_progress(
                    [str(dump_tool), "--format=custom", "--compress=6", "--verbose",
                     f"--snapshot={snapshot}", f"--file={dump}", f"--dbname={target}"],
                    env,
                    progress,
                    r'dumping contents of table "?public\.([^" ]+)',
                )  # fmt: skip
                version = await asyncio.create_subprocess_exec(
                    str(dump_tool), "--version", stdout=asyncio.subprocess.PIPE
                )
                dump_version = (await version.communicate())[0].decode().strip()
                manifest = {
                    "format": FORMAT,
                    "created_at": datetime.now(UTC).isoformat(),
                    "stockyard_version": __version__,
                    "schema_revision": revision,
                    "server_version": version_text,
                    "pg_dump": dump_version,
                    "tenants": rows.get("tenant", 0),
                    "rows": rows,
                    "secret_key_fingerprint": key_fingerprint(
                        settings.secret_key.get_secret_value()
                    ),
                    "secret_key": "not in this backup: restore needs the same STOCKYARD_SECRET_KEY",
                }
                (Path(work) / MANIFEST_MEMBER).write_text(json.dumps(manifest, indent=2) + "\n")
                partial = Path(work) / "backup.tar"
                # It holds every tenant's data and password hashes: the operator's eyes only.
                partial.touch(mode=0o600)
                with tarfile.open(partial, "w") as archive:
                    archive.add(Path(work) / MANIFEST_MEMBER, arcname=MANIFEST_MEMBER)
                    archive.add(dump, arcname=DUMP_MEMBER)
                partial.replace(path)
    finally:
        await connection.close()
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        with tarfile.open(path, "r") as archive:
            member = archive.extractfile(MANIFEST_MEMBER)
            if member is None:
                raise KeyError(MANIFEST_MEMBER)
            manifest: dict[str, Any] = json.loads(member.read())
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(f"{path} is not a Stockyard backup ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.get('format')!r}")
    return manifest


def check_key(manifest: dict[str, Any], settings: Settings) -> None:
    if settings.secret_key is None:
        raise BackupError(
            "set STOCKYARD_SECRET_KEY to the key of the installation the backup was taken "
            "from (an embedded install keeps it in its data directory, file secret_key)"
        )
    if (
        key_fingerprint(settings.secret_key.get_secret_value())
        != manifest["secret_key_fingerprint"]
    ):
        raise BackupError(
            "STOCKYARD_SECRET_KEY is not the key this backup was taken with: its signing keys "
            "could not be decrypted, so every token would fail. Set the original key."
        )


async def tables_in(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            )
        )
    finally:
        await connection.close()


def check_revision(manifest: dict[str, Any], known: list[str]) -> None:
    """A backup from a newer Stockyard than this one cannot be migrated: refused before
    anything is touched."""
    revision = manifest.get("schema_revision")
    if revision not in known:
        raise BackupError(
            f"this backup is at schema revision {revision}, which this Stockyard does not know "
            "(it is newer): restore it with the version that took it, or a later one"
        )


async def empty_schema(dsn: str) -> None:
    """`--force`: the target's tables, functions and types go, whatever their revision, so
    the backup comes back as it was rather than merged into what was there."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("DROP SCHEMA public CASCADE")
            await connection.execute("CREATE SCHEMA public")
            await connection.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
    finally:
        await connection.close()


async def ensure_roles(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for role, options in ROLES.items():
            exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await connection.execute(f"{verb} ROLE {role} {options}")
        await connection.execute(f"GRANT {SUPPORT_ROLE} TO {APP_ROLE}")
    finally:
        await connection.close()


async def grant_connect(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {APP_ROLE}', "
            "current_database()); END $$"
        )
    finally:
        await connection.close()


async def restore_dump(
    dsn: str, path: Path, *, clean: bool, progress: Callable[[str], None]
) -> None:
    """pg_restore into the database, in one transaction: a failure leaves the (empty)
    target as it was. With `clean`, the target's schema is emptied first."""
    major, _ = await server_version(dsn)
    restore_tool = pg_tool("pg_restore", major)
    await ensure_roles(dsn)
    if clean:
        await empty_schema(dsn)
    target, env = _libpq(dsn)
    with tempfile.TemporaryDirectory(prefix="stockyard-restore-") as work:
        with tarfile.open(path, "r") as archive:
            archive.extract(DUMP_MEMBER, work, filter="data")
        command = [
            str(restore_tool), "--single-transaction", "--exit-on-error", "--verbose",
            f"--dbname={target}", str(Path(work) / DUMP_MEMBER),
        ]  # fmt: skip
        await _run_with_progress(
            command, env, progress, r'processing data for table "?public\.([^" ]+)'
        )
    await grant_connect(dsn)
