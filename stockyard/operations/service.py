"""A tenant's data on request: all of it exported, or all of it erased.

Export runs as the app role inside the tenant's own transaction (REPEATABLE READ, read only:
one snapshot for every table), so row-level security decides what it can read: only that
tenant's rows, whatever the code asks for. Every tenant table found in the catalog is either
exported (less the columns that hold secrets) or named here with the reason it is not; a
table added later fails tests/operations until it is one or the other.

Erasure marks the tenant deleted first (its slug and API clients stop resolving, every
session is revoked), then, after the grace period, deletes every row of it, partition by
partition for the partitioned tables and then table by table in foreign-key order, and
checks from the catalog that no row with its id is left anywhere.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.auth import repository as auth_repository
from stockyard.core import audit_trail, tenancy
from stockyard.core.audit_trail import PLATFORM_TENANT_ID
from stockyard.core.errors import NotFound
from stockyard.core.principal import PrincipalKind
from stockyard.operations import repository
from stockyard.operations.repository import TenantTable
from stockyard.tenants import repository as tenant_repository

# Columns never exported: secrets, and what would let anyone act as the tenant.
OMITTED_COLUMNS: dict[str, frozenset[str]] = {
    "app_user": frozenset({"password_hash"}),
    "api_client": frozenset({"secret_hash"}),
    "webhook_endpoint": frozenset({"secret", "previous_secret"}),
}
# Tenant tables not exported, and why.
NOT_EXPORTED: dict[str, str] = {
    "refresh_token": "refresh-token hashes and sealed token pairs: credentials, not data",
    "revoked_access_token": "short-lived revocation records of access tokens",
    "idempotency_key": "cached responses to retried requests, expiring within a day",
}


@dataclass(frozen=True, slots=True)
class ExportPlan:
    tables: list[tuple[TenantTable, list[str]]]
    not_exported: dict[str, str]


def plan_export(tables: list[TenantTable]) -> ExportPlan:
    exported = [
        (table, [c for c in table.columns if c not in OMITTED_COLUMNS.get(table.name, ())])
        for table in tables
        if table.name not in NOT_EXPORTED
    ]
    return ExportPlan(
        exported, {t.name: NOT_EXPORTED[t.name] for t in tables if t.name in NOT_EXPORTED}
    )


class _Chunks(io.RawIOBase):
    """Where the zip is written: bytes collected until the stream takes them. Not seekable,
    so zipfile writes data descriptors and never goes back."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        taken = b"".join(self._parts)
        self._parts.clear()
        return taken


async def export_tenant(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> AsyncIterator[bytes]:
    """The tenant's data as a zip, streamed: `<table>.jsonl` per table (one JSON object per
    row, in key order) and `manifest.json` (counts, what is left out and why). `sessionmaker`
    must connect as the app role: row-level security is what keeps this to one tenant."""
    async with sessionmaker() as session:
        tenancy.scope_to_tenant(session, tenant_id)
        # One snapshot for every table; the transaction begins scoped to the tenant.
        await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
        tenant = await tenant_repository.get_tenant(session, tenant_id)
        if tenant is None:
            raise NotFound("No such tenant.")
        plan = plan_export(await repository.tenant_tables(session))
        sink = _Chunks()
        counts: dict[str, int] = {}
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for table, columns in plan.tables:
                counts[table.name] = 0
                with archive.open(f"{table.name}.jsonl", "w", force_zip64=True) as entry:
                    async for rows in repository.stream_rows_as_json(session, table, columns):
                        entry.write(("\n".join(rows) + "\n").encode())
                        counts[table.name] += len(rows)
                        yield sink.take()
            manifest = {
                "format": "stockyard-tenant-export/1",
                "tenant": {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name},
                "exported_at": datetime.now(UTC).isoformat(),
                "counts": counts,
                "omitted_columns": {k: sorted(v) for k, v in OMITTED_COLUMNS.items()},
                "not_exported": plan.not_exported,
            }
            archive.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        yield sink.take()


@dataclass(frozen=True, slots=True)
class Deletion:
    tenant_id: uuid.UUID
    sessions_revoked: list[uuid.UUID]


async def mark_deleted(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, *, grace_seconds: int
) -> Deletion:
    """Deleted from now on (no sign-in: its slug and its clients no longer resolve), every
    session and client revoked, erasable after the grace period; filed in the platform's own
    audit log. The caller tells Redis of the revoked sessions (this has committed)."""
    async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
        await repository.lock_tenant(session, tenant_id)
        await repository.mark_deleted(session, tenant_id, grace_seconds)
        await repository.disable_webhooks(session, tenant_id)
        # The tenant is named in every statement: the owner is not bound by row-level security.
        families = await auth_repository.revoke_families(
            session, tenant_id=tenant_id, reason="tenant_deleted"
        )
        clients = await repository.revoke_clients(session, tenant_id)
    await _audit_platform(
        sessionmaker,
        "tenant.delete",
        tenant_id,
        grace_seconds=grace_seconds,
        sessions_revoked=len(families) + len(clients),
    )
    return Deletion(tenant_id, families + clients)


async def _audit_platform(
    sessionmaker: async_sessionmaker[AsyncSession],
    action: str,
    tenant_id: uuid.UUID,
    **details: object,
) -> None:
    # The tenant's own trail goes with it: the platform's keeps what happened to it.
    await audit_trail.record_apart(
        sessionmaker,
        tenant_id=PLATFORM_TENANT_ID,
        actor_type=PrincipalKind.SYSTEM,
        actor_id=None,
        action=action,
        status=200,
        resource_type="tenant",
        details={"tenant_id": str(tenant_id), **details},
    )


def erasure_order(tables: list[TenantTable]) -> list[TenantTable]:
    """Tables whose rows point at others first, `tenant` last: each delete leaves no row
    another still refers to."""
    ordered: list[TenantTable] = []
    placed: set[str] = set()

    def place(table: TenantTable, visiting: frozenset[str]) -> None:
        if table.name in placed or table.name in visiting:
            return
        # Everything that references this table goes before it.
        for other in tables:
            if table.name in other.references:
                place(other, visiting | {table.name})
        placed.add(table.name)
        ordered.append(table)

    for table in sorted(tables, key=lambda t: t.name == "tenant"):
        place(table, frozenset())
    return ordered


async def erase_tenant(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> dict[str, int]:
    """Delete every row of a tenant marked deleted, as the owner. The partitioned tables
    (audit trail, event log) go partition by partition, each in a transaction of its own, so
    no transaction holds every partition's locks; then the rest in one transaction, in
    foreign-key order, the tenant row last. Run again after a failure, it carries on."""
    async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
        tables = await repository.tenant_tables(session)
    deleted: dict[str, int] = {}
    for table in tables:
        for partition in table.partitions:
            async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
                count = await repository.delete_rows_of(
                    session, partition, table.tenant_column, tenant_id
                )
            deleted[table.name] = deleted.get(table.name, 0) + count
    async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
        for table in erasure_order(tables):
            count = await repository.delete_rows_of(
                session, table.name, table.tenant_column, tenant_id
            )
            deleted[table.name] = deleted.get(table.name, 0) + count
    await _audit_platform(sessionmaker, "tenant.erase", tenant_id, rows=sum(deleted.values()))
    return deleted


async def rows_left(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> dict[str, int]:
    """Rows carrying the tenant's id in every tenant table the catalog knows (partitions
    included through their parent): all zero once it is erased."""
    async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
        return {
            table.name: await repository.count_rows_of(
                session, table.name, table.tenant_column, tenant_id
            )
            for table in await repository.tenant_tables(session)
        }


async def due_for_erasure(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    return await repository.tenants_due_for_erasure(session)


async def tenant_by_slug(session: AsyncSession, slug: str) -> repository.TenantState | None:
    """A tenant by slug for the operator's commands, deleted or not."""
    return await repository.tenant_by_slug(session, slug)
