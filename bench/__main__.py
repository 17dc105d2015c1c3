"""`python -m bench`: Stockyard measured side by side in one run (`python -m bench cpu`: server
CPU time per request, one worker; see bench/cpu.py).

Starts the API (uvicorn workers, embedded services unless STOCKYARD_BENCH_DATABASE_URL (a
superuser URL) and STOCKYARD_BENCH_REDIS_URL name others), seeds two tenants of 1,000 products,
10 locations and 1,000,000 movements each, drives bounded load from a separate process, prints
one table and writes bench/results/latest.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import driver, seed, wrk
from bench.harness import bench_stack, free_port, load, signup, start_server, wait_ready
from bench.stats import summarize
from stockyard.core.database import app_url, owner_url, to_libpq_dsn
from stockyard.core.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


STOCK_SQL = """
SELECT p.sku, l.code AS location, b.on_hand, b.reserved, p.reorder_point
FROM balance b JOIN product p ON p.id = b.product_id JOIN location l ON l.id = b.location_id
WHERE true AND p.sku = $1 ORDER BY p.sku, l.code LIMIT 101
"""


async def _database_floor(
    dsn: str, tenant_id: uuid.UUID, skus: list[str], duration: float, concurrency: int
) -> dict[str, Any]:
    """(b): the stock query with its tenant scoping (BEGIN, set_config, the query, COMMIT),
    as the app role on `concurrency` asyncpg connections at once: the load (a) is measured
    under, so the two compare like for like."""
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    latencies: list[float] = []
    started = time.perf_counter()

    async def worker() -> None:
        async with pool.acquire() as connection:
            while time.perf_counter() - started < duration:
                t0 = time.perf_counter()
                async with connection.transaction():
                    await connection.execute(
                        "SELECT set_config('app.tenant_id', $1, true)", str(tenant_id)
                    )
                    await connection.fetch(STOCK_SQL, random.choice(skus))
                latencies.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await pool.close()
    return {"latencies": latencies, "elapsed": time.perf_counter() - started}


async def _rls_cost(
    app_dsn: str, owner_dsn: str, tenant_id: uuid.UUID, product_ids: list[uuid.UUID], rounds: int
) -> dict[str, Any]:
    """One tenant-scoped history page: the app role under RLS vs the owner with an explicit
    WHERE tenant_id, interleaved so both see the same machine."""
    app_conn, owner_conn = await asyncpg.connect(app_dsn), await asyncpg.connect(owner_dsn)
    rls_sql = (
        "SELECT id, delta, occurred_at FROM movement WHERE product_id = $1 "
        "ORDER BY occurred_at, id LIMIT 100"
    )
    explicit_sql = (
        "SELECT id, delta, occurred_at FROM movement WHERE tenant_id = $2 "
        "AND product_id = $1 ORDER BY occurred_at, id LIMIT 100"
    )
    rls, explicit = [], []
    try:
        async with app_conn.transaction():
            await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
            plan_rls = [
                r[0]
                for r in await app_conn.fetch(
                    "EXPLAIN " + rls_sql.replace("$1", f"'{product_ids[0]}'")
                )
            ]
        plan_explicit = [
            r[0]
            for r in await owner_conn.fetch(
                "EXPLAIN "
                + explicit_sql.replace("$1", f"'{product_ids[0]}'").replace("$2", f"'{tenant_id}'")
            )
        ]
        for _ in range(rounds):
            product_id = random.choice(product_ids)
            t0 = time.perf_counter()
            async with app_conn.transaction():
                await app_conn.execute(
                    "SELECT set_config('app.tenant_id', $1, true)", str(tenant_id)
                )
                await app_conn.fetch(rls_sql, product_id)
            rls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            async with owner_conn.transaction():
                await owner_conn.fetch(explicit_sql, product_id, tenant_id)
            explicit.append(time.perf_counter() - t0)
    finally:
        await app_conn.close()
        await owner_conn.close()
    rls_row = summarize("rls: app role, policy filters", rls, sum(rls))
    explicit_row = summarize("rls: owner, explicit WHERE tenant_id", explicit, sum(explicit))
    return {
        "rows": [rls_row, explicit_row],
        "plan_rls": plan_rls,
        "plan_explicit": plan_explicit,
        "ratio": rls_row["p50_ms"] / explicit_row["p50_ms"],
    }


async def _limiter_call(settings: Settings, rounds: int) -> dict[str, Any]:
    """The limiter's own cost: one EVALSHA per request, timed in-process."""
    from stockyard.auth.limiter import RateLimiter
    from stockyard.core.redis import create_redis

    assert settings.redis_url is not None
    redis = create_redis(settings.redis_url, settings)
    limiter = RateLimiter(redis, prefix="bench:", fail_open=False, revocation_ttl_seconds=60)
    sid = uuid.uuid4()
    await limiter.check_session(sid, token_id="bench", per_minute=10**9, burst=10**9)
    latencies = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await limiter.check_session(sid, token_id="bench", per_minute=10**9, burst=10**9)
        latencies.append(time.perf_counter() - t0)
    await redis.aclose()
    ordered = sorted(latencies)
    return {
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
        "calls": rounds,
    }


async def _orm_row_by_row(
    settings: Settings,
    tenant_id: uuid.UUID,
    items: list[dict[str, Any]],
    product_by_sku: dict[str, uuid.UUID],
    location_by_code: dict[str, uuid.UUID],
) -> float:
    """The baseline bulk ingest is measured against: one ORM insert and one balance
    statement per movement, in one transaction, as the app role, and the stock events of
    the balances it touched (as bulk ingest writes them; a commit without them is refused)."""
    from stockyard.core.database import create_engine, create_sessionmaker
    from stockyard.core.ids import new_id
    from stockyard.core.tenancy import set_current_tenant
    from stockyard.inventory.ledger import repository as ledger_repository
    from stockyard.inventory.ledger.service import publish_stock_changes
    from stockyard.inventory.models import Movement

    engine = create_engine(app_url(settings), settings, pool_size=1)
    started = time.perf_counter()
    async with create_sessionmaker(engine)() as session, session.begin():
        await set_current_tenant(session, tenant_id)
        for item in items:
            product_id = product_by_sku[item["sku"]]
            location_id = location_by_code[item["location"]]
            session.add(
                Movement(
                    tenant_id=tenant_id,
                    id=new_id(),
                    product_id=product_id,
                    location_id=location_id,
                    delta=item["quantity"],
                    kind="receipt",
                    occurred_at=time_now(),
                )
            )
            await session.flush()
            await ledger_repository.apply_delta(
                session,
                tenant_id=tenant_id,
                product_id=product_id,
                location_id=location_id,
                delta=item["quantity"],
            )
        await publish_stock_changes(session, tenant_id)
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _machine(settings: Settings) -> dict[str, Any]:
    async def versions() -> tuple[str, str]:
        from stockyard.core.redis import create_redis

        connection = await asyncpg.connect(to_libpq_dsn(owner_url(settings)))
        pg = str(await connection.fetchval("SHOW server_version"))
        await connection.close()
        assert settings.redis_url is not None
        redis = create_redis(settings.redis_url, settings)
        info = await redis.info("server")
        await redis.aclose()
        return pg, str(info["redis_version"])

    pg, redis = asyncio.run(versions())
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "postgres": pg,
        "redis": redis,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--movements", type=int, default=1_000_000, help="per tenant")
    parser.add_argument("--products", type=int, default=1_000)
    parser.add_argument("--locations", type=int, default=10)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--bulk", type=int, default=100_000, help="movements for bulk ingest")
    parser.add_argument("--orm-rows", type=int, default=100_000, help="row-by-row baseline size")
    args = parser.parse_args()
    started = time.monotonic()

    servers: list[subprocess.Popen[bytes]] = []
    with bench_stack("stockyard-bench-") as stack:
        settings = stack.settings
        # Two servers of `--workers` processes, three pools each (sessions, reads, writes),
        # beside this process's own connections: sized so that together they stay under a
        # default PostgreSQL's 100 connections (each worker serves about 16 / workers of
        # the load's connections at a time).
        pool_size = max(4, args.concurrency // args.workers)
        env = {**stack.server_env, "STOCKYARD_DB_POOL_SIZE": str(pool_size)}
        try:
            with_port, without_port = free_port(), free_port()
            with_url, without_url = (
                f"http://127.0.0.1:{with_port}",
                f"http://127.0.0.1:{without_port}",
            )
            servers.append(start_server(env, with_port, args.workers, stack.workdir / "with.log"))
            servers.append(
                start_server(
                    {**env, "STOCKYARD_RATE_LIMIT_ENABLED": "false"},
                    without_port,
                    args.workers,
                    stack.workdir / "without.log",
                )
            )
            wait_ready(with_url)
            wait_ready(without_url)

            print(f"seeding 2 tenants x {args.movements:,} movements ...", flush=True)
            tenants = [signup(with_url, f"bench-{i}-{secrets.token_hex(3)}") for i in range(2)]
            seeded = [
                asyncio.run(
                    seed.seed_tenant(
                        to_libpq_dsn(owner_url(settings)),
                        tenant_id,
                        products=args.products,
                        locations=args.locations,
                        movements=args.movements,
                        seed=i,
                    )
                )
                for i, (tenant_id, _) in enumerate(tenants)
            ]
            (tenant_id, token), (skus, codes, product_ids) = tenants[0], seeded[0]
            auth = {"Authorization": f"Bearer {token}"}
            rows: list[dict[str, Any]] = []

            def phase(
                url: str,
                method: str,
                paths: list[str],
                bodies: list[Any] | None = None,
                headers: dict[str, str] | None = None,
                duration: float | None = None,
            ) -> dict[str, Any]:
                result = load(
                    driver.Plan(
                        url,
                        method,
                        paths,
                        headers or {},
                        bodies,
                        duration or args.duration,
                        args.concurrency,
                        10_000_000,
                    )
                )
                return result

            def merge(label: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
                """One row from interleaved parts: counts add up; percentiles are the
                request-weighted mean of the parts' percentiles."""
                requests = sum(p["requests"] for p in parts)
                elapsed = sum(p["elapsed"] for p in parts)

                def weighted(key: str) -> float:
                    return float(sum(p[key] * p["requests"] for p in parts) / max(requests, 1))

                return {
                    "name": label,
                    "requests": requests,
                    "throughput_per_s": requests / elapsed,
                    "p50_ms": weighted("p50_ms"),
                    "p99_ms": weighted("p99_ms"),
                    "non_2xx": sum(p["non_2xx"] for p in parts),
                }

            print("load phases ...", flush=True)
            stock_paths = [f"/api/v1/stock?sku={sku}" for sku in skus]
            with_parts, without_parts = [], []
            for _ in range(2):  # interleaved: the same noise falls on both
                with_parts.append(
                    phase(with_url, "GET", stock_paths, headers=auth, duration=args.duration / 2)
                )
                without_parts.append(
                    phase(without_url, "GET", stock_paths, headers=auth, duration=args.duration / 2)
                )
            stock_row = merge("(a) GET /stock?sku= (JWT, limiter, tenant, RLS)", with_parts)
            no_limiter_row = merge("(a') same, limiter disabled", without_parts)
            floor = asyncio.run(
                _database_floor(
                    to_libpq_dsn(app_url(settings)),
                    tenant_id,
                    skus,
                    args.duration,
                    args.concurrency,
                )
            )
            floor_row = summarize(
                f"(b) same SQL, {args.concurrency} asyncpg connections (database floor)",
                floor["latencies"],
                floor["elapsed"],
            )
            framework_row = merge(
                "(c) GET /livez (framework floor)", [phase(with_url, "GET", ["/livez"])]
            )
            receipts = [
                {
                    "sku": random.choice(skus),
                    "location": random.choice(codes),
                    "kind": "receipt",
                    "quantity": 1,
                }
                for _ in range(1000)
            ]
            post_row = merge(
                "(d) POST /movements",
                [phase(with_url, "POST", ["/api/v1/movements"], receipts, auth)],
            )
            history_paths = [f"/api/v1/movements?sku={sku}&limit=100" for sku in skus]
            history_row = merge(
                "(f) GET /movements?sku= (history, 1M-row tenant)",
                [phase(with_url, "GET", history_paths, headers=auth)],
            )

            print(f"bulk ingest {args.bulk:,} movements ...", flush=True)
            items = [
                {
                    "sku": random.choice(skus),
                    "location": random.choice(codes),
                    "kind": "receipt",
                    "quantity": random.randint(1, 5),
                }
                for _ in range(args.bulk)
            ]
            bulk_started = time.perf_counter()
            with httpx.Client(base_url=with_url, headers=auth, timeout=300) as client:
                for offset in range(0, len(items), 10_000):
                    response = client.post(
                        "/api/v1/movements/bulk", json={"items": items[offset : offset + 10_000]}
                    )
                    response.raise_for_status()
            bulk_seconds = time.perf_counter() - bulk_started
            print(f"row-by-row ORM baseline, {args.orm_rows:,} movements ...", flush=True)
            owner = to_libpq_dsn(owner_url(settings))

            async def ids() -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]]:
                connection = await asyncpg.connect(owner)
                products = {
                    r["sku"]: r["id"]
                    for r in await connection.fetch(
                        "SELECT sku, id FROM product WHERE tenant_id = $1", tenant_id
                    )
                }
                locations = {
                    r["code"]: r["id"]
                    for r in await connection.fetch(
                        "SELECT code, id FROM location WHERE tenant_id = $1", tenant_id
                    )
                }
                await connection.close()
                return products, locations

            product_by_sku, location_by_code = asyncio.run(ids())
            orm_seconds = asyncio.run(
                _orm_row_by_row(
                    settings, tenant_id, items[: args.orm_rows], product_by_sku, location_by_code
                )
            )
            bulk_rate, orm_rate = args.bulk / bulk_seconds, args.orm_rows / orm_seconds

            limiter = asyncio.run(_limiter_call(settings, 5000))
            rls = asyncio.run(
                _rls_cost(to_libpq_dsn(app_url(settings)), owner, tenant_id, product_ids, 2000)
            )
            rows = [
                stock_row,
                no_limiter_row,
                floor_row,
                framework_row,
                post_row,
                history_row,
                *rls["rows"],
            ]
            ratios = {
                "(a)/(b) full guard stack vs database floor, throughput at the same concurrency": (
                    stock_row["throughput_per_s"] / floor_row["throughput_per_s"]
                ),
                "(a)/(c) full guard stack vs framework floor, throughput": stock_row[
                    "throughput_per_s"
                ]
                / framework_row["throughput_per_s"],
                "limiter on/off, throughput": stock_row["throughput_per_s"]
                / no_limiter_row["throughput_per_s"],
                "bulk ingest / row-by-row ORM, movements per second": bulk_rate / orm_rate,
                "RLS / explicit WHERE tenant_id, p50 latency": rls["ratio"],
            }
            result = {
                "command": "python -m bench " + " ".join(sys.argv[1:]),
                "load_driver": "wrk" if wrk.available() else "python (httpx)",
                "machine": _machine(settings),
                "config": vars(args),
                "ratios": ratios,
                "rows": rows,
                "bulk": {
                    "movements": args.bulk,
                    "seconds": bulk_seconds,
                    "per_second": bulk_rate,
                    "orm_rows": args.orm_rows,
                    "orm_seconds": orm_seconds,
                    "orm_per_second": orm_rate,
                },
                "limiter_redis_call": limiter,
                "rls_explain": {
                    "app_role_rls": rls["plan_rls"],
                    "owner_explicit": rls["plan_explicit"],
                },
                "elapsed_seconds": time.monotonic() - started,
            }
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
            _print(result)
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
            for server in servers:
                with suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=30)


def _print(result: dict[str, Any]) -> None:
    print(f"\nload driver: {result['load_driver']}")
    print("Ratios (one run, side by side)")
    for label, value in result["ratios"].items():
        print(f"  {value:8.2f}x  {label}")
    print(f"\n{'scenario':58} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for row in result["rows"]:
        print(
            f"{row['name']:58} {row['throughput_per_s']:9.0f} {row['p50_ms']:8.2f} "
            f"{row['p99_ms']:8.2f}"
        )
    bulk = result["bulk"]
    print(
        f"\n(e) bulk ingest: {bulk['per_second']:,.0f} movements/s "
        f"({bulk['movements']:,} in {bulk['seconds']:.1f} s); row-by-row ORM: "
        f"{bulk['orm_per_second']:,.0f} movements/s"
    )
    limiter = result["limiter_redis_call"]
    print(f"limiter Redis call: p50 {limiter['p50_us']:.0f} us, p99 {limiter['p99_us']:.0f} us")
    index_lines = [
        line.strip() for line in result["rls_explain"]["app_role_rls"] if "Index" in line
    ]
    print(f"RLS plan: {index_lines[0] if index_lines else 'no index scan'}")
    print(f"\nwrote {RESULTS} in {result['elapsed_seconds']:.0f} s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["cpu"]:
        from bench import cpu

        cpu.main(sys.argv[2:])
    elif sys.argv[1:2] == ["pooler"]:
        from bench import pooler

        pooler.main(sys.argv[2:])
    elif sys.argv[1:2] == ["backup"]:
        from bench import backup

        backup.main(sys.argv[2:])
    elif sys.argv[1:2] == ["console"]:
        from bench import console

        console.main(sys.argv[2:])
    elif sys.argv[1:2] == ["webhooks"]:
        from bench import webhooks

        webhooks.main(sys.argv[2:])
    else:
        main()
