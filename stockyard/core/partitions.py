"""Monthly range partitions for the append-only, time-ordered tables (the audit trail and the
event log): created ahead of time, each walled off by tenant like its parent (a partition read
directly does not inherit the parent's policies), and dropped whole once past retention."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.tenancy import tenant_policy_statements


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_y{month:%Y}m{month:%m}"


async def ensure_monthly_partitions(
    session: AsyncSession,
    table: str,
    *,
    months_ahead: int = 3,
    extra_policies: Callable[[str], list[str]] = lambda _: [],
) -> list[str]:
    """Partitions of `table` from this month to `months_ahead` on. As the owner."""
    created = []
    start = _month_start(datetime.now(UTC).date())
    for _ in range(months_ahead + 1):
        end = _next_month(start)
        name = partition_name(table, start)
        exists = await session.scalar(text("SELECT to_regclass(:name)"), {"name": name})
        if exists is None:
            await session.execute(
                text(
                    f"CREATE TABLE {name} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
            )
            for statement in [*tenant_policy_statements(name), *extra_policies(name)]:
                await session.execute(text(statement))
            created.append(name)
        start = end
    return created


async def drop_partitions_before(session: AsyncSession, table: str, cutoff: datetime) -> list[str]:
    """Drop the monthly partitions of `table` that hold nothing newer than `cutoff`. As the
    owner. The default partition is never dropped."""
    pattern = re.compile(rf"^{re.escape(table)}_y(\d{{4}})m(\d{{2}})$")
    names = await session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:table)"
        ),
        {"table": table},
    )
    dropped = []
    for name in sorted(names):
        found = pattern.match(name)
        if found is None:
            continue
        month_end = _next_month(date(int(found.group(1)), int(found.group(2)), 1))
        if datetime(month_end.year, month_end.month, 1, tzinfo=UTC) <= cutoff:
            await session.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
    return dropped
