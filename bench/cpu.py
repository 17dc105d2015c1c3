"""`python -m bench cpu`: server CPU time per request, one worker, under wrk.

Starts one `stockyard serve --workers 1` on a throwaway database (on the services named by
STOCKYARD_BENCH_DATABASE_URL, a superuser URL, and STOCKYARD_BENCH_REDIS_URL, else embedded
ones), seeds one tenant, then runs each request below under wrk (16 connections) while reading
the server process's own CPU time (utime + stime, /proc/<pid>/stat) before and after: CPU ms
per request is the most stable figure on a shared, noisy box. Every scenario runs in rounds,
interleaved, so the same noise falls on all of them. `/livez` (the framework floor) and the
asyncpg floor (BEGIN + set_config + a primary-key select + COMMIT on 16 connections, in this
process) are measured in the same run, and so are a 10,000-item bulk ingest (end to end), the
bulk floor (the same batches' database work alone: staging, resolving and the ledger insert),
and history pages on a tenant with a large ledger. With `--server-tree`, a second server from
another checkout runs beside the first on the same database and every round measures both,
one after the other, so a before/after ratio comes from one run. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import driver, seed, wrk
from bench.harness import bench_stack, free_port, signup, start_server, wait_ready
from stockyard.core.database import app_url, owner_url, to_libpq_dsn
from stockyard.core.ids import new_ids

RESULTS = Path(__file__).resolve().parent / "results" / "cpu.json"
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The process's own CPU time so far, all its threads, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def measure(pid: int, plan: driver.Plan) -> dict[str, Any]:
    before = cpu_seconds(pid)
    result = wrk.run(plan)
    used = cpu_seconds(pid) - before
    return {**result, "cpu_seconds": used}


async def asyncpg_floor(
    dsn: str, tenant_id: uuid.UUID, product_ids: list[uuid.UUID], duration: float
) -> dict[str, Any]:
    """What the database round trips of one authenticated product GET allow: 16 connections,
    each BEGIN + set_config + the primary-key select + COMMIT, as the app role."""
    pool = await asyncpg.create_pool(dsn, min_size=16, max_size=16)
    done = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as connection:
            while time.perf_counter() < deadline:
                async with connection.transaction():
                    await connection.execute(
                        "SELECT set_config('app.tenant_id', $1, true)", str(tenant_id)
                    )
                    await connection.fetchrow(
                        "SELECT * FROM product WHERE id = $1", random.choice(product_ids)
                    )
                done += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(16)))
    finally:
        await pool.close()
    return {"transactions_per_s": done / (time.perf_counter() - started)}


async def bulk_floor(
    dsn: str, tenant_id: uuid.UUID, skus: list[str], codes: list[str], requests: int
) -> dict[str, Any]:
    """What the database alone allows a bulk batch, doing the least any batch must: as the
    app role, BEGIN with the tenant, COPY 10,000 receipts into a temporary table (COPY into a
    table under row-level security is refused), resolve their SKUs and codes, insert them into
    the ledger (its indexes, foreign keys and policy), COMMIT. No JSON, no validation, no
    balance and no event: the end-to-end bulk figure cannot beat this one."""
    rng = random.Random(3)
    connection = await asyncpg.connect(dsn)
    elapsed = 0.0
    try:
        # The first batch warms the connection's caches up and is not counted.
        for batch in range(requests + 1):
            rows = [
                (index, movement_id, rng.choice(skus), rng.choice(codes), rng.randint(1, 5))
                for index, movement_id in enumerate(new_ids(10_000))
            ]
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(
                    "SELECT set_config('app.tenant_id', $1, true)", str(tenant_id)
                )
                await connection.execute(
                    "CREATE TEMP TABLE floor_stage (idx integer, id uuid, sku text, "
                    "location text, delta bigint) ON COMMIT DROP"
                )
                await connection.copy_records_to_table("floor_stage", records=rows)
                await connection.execute(
                    """
                    INSERT INTO movement (tenant_id, id, product_id, location_id, delta, kind,
                                          occurred_at)
                    SELECT $1, s.id, p.id, l.id, s.delta, 'receipt', now()
                    FROM floor_stage s
                    JOIN product p ON p.sku = s.sku
                    JOIN location l ON l.code = s.location
                    ORDER BY s.idx
                    """,
                    tenant_id,
                )
            if batch:
                elapsed += time.perf_counter() - started
    finally:
        await connection.close()
    return {"requests": requests, "movements_per_s": requests * 10_000 / elapsed}


def bulk_ingest(
    pid: int,
    url: str,
    auth: dict[str, str],
    skus: list[str],
    codes: list[str],
    requests: int,
) -> dict[str, Any]:
    """10,000-item bulk requests sent one after another, end to end (JSON encoding on the
    client excluded: the bodies are encoded before the clock starts)."""
    rng = random.Random(2)
    bodies = [
        json.dumps(
            {
                "items": [
                    {
                        "sku": rng.choice(skus),
                        "location": rng.choice(codes),
                        "kind": "receipt",
                        "quantity": rng.randint(1, 5),
                    }
                    for _ in range(10_000)
                ]
            }
        ).encode()
        for _ in range(requests + 1)
    ]
    headers = {**auth, "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/api/v1/movements/bulk", content=bodies[0], headers=headers).raise_for_status()
        before = cpu_seconds(pid)
        started = time.perf_counter()
        for body in bodies[1:]:
            client.post("/api/v1/movements/bulk", content=body, headers=headers).raise_for_status()
        elapsed = time.perf_counter() - started
        used = cpu_seconds(pid) - before
    movements = requests * 10_000
    return {
        "requests": requests,
        "movements_per_s": movements / elapsed,
        "cpu_us_per_movement": 1e6 * used / movements,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench cpu", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--products", type=int, default=1_000)
    parser.add_argument(
        "--history-movements",
        type=int,
        default=1_000_000,
        help="ledger size of the tenant whose history pages are read",
    )
    parser.add_argument(
        "--bulk-requests", type=int, default=5, help="10,000-item bulk requests, one at a time"
    )
    parser.add_argument(
        "--server-tree",
        type=Path,
        help="run the server from another checkout of this repository (a before/after "
        "comparison on the same database schema), e.g. a `git worktree` of an older commit",
    )
    args = parser.parse_args(argv)
    if not wrk.available():
        raise SystemExit("python -m bench cpu needs wrk (apt-get install wrk)")

    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    with bench_stack("stockyard-bench-cpu-") as stack:
        settings = stack.settings
        try:
            # The server of this checkout, and with --server-tree the other one beside it on
            # the same database: both are measured in the same rounds, interleaved.
            for name, tree in (("now", None), ("before", args.server_tree)):
                if name == "before" and tree is None:
                    continue
                port = free_port()
                process = start_server(
                    {**stack.server_env, "STOCKYARD_LOG_LEVEL": "WARNING"},
                    port,
                    1,
                    stack.workdir / f"server-{name}.log",
                    tree=tree,
                )
                servers[name] = (process, f"http://127.0.0.1:{port}")
            for _, url in servers.values():
                wait_ready(url)
            url = servers["now"][1]
            tenant_id, token = signup(url, f"cpu-{secrets.token_hex(3)}")
            skus, codes, product_ids = asyncio.run(
                seed.seed_tenant(
                    to_libpq_dsn(owner_url(settings)),
                    tenant_id,
                    products=args.products,
                    locations=10,
                    movements=args.products * 10,
                    seed=0,
                )
            )
            history_tenant, history_token = signup(url, f"cpu-history-{secrets.token_hex(3)}")
            history_skus, _, _ = asyncio.run(
                seed.seed_tenant(
                    to_libpq_dsn(owner_url(settings)),
                    history_tenant,
                    products=args.products,
                    locations=10,
                    movements=args.history_movements,
                    seed=1,
                )
            )
            auth = {"Authorization": f"Bearer {token}"}
            receipts = [
                {
                    "sku": random.choice(skus),
                    "location": random.choice(codes),
                    "kind": "receipt",
                    "quantity": 1,
                }
                for _ in range(1000)
            ]
            scenarios: dict[str, tuple[str, list[str], dict[str, str], list[Any] | None]] = {
                "GET /livez (framework floor)": ("GET", ["/livez"], {}, None),
                "GET /api/v1/products/{id}": (
                    "GET",
                    [f"/api/v1/products/{product_id}" for product_id in product_ids],
                    auth,
                    None,
                ),
                "GET /api/v1/stock?sku=": (
                    "GET",
                    [f"/api/v1/stock?sku={sku}" for sku in skus],
                    auth,
                    None,
                ),
                "POST /api/v1/movements (receipt)": ("POST", ["/api/v1/movements"], auth, receipts),
                f"GET /api/v1/movements?sku= ({args.history_movements:,}-movement tenant)": (
                    "GET",
                    [f"/api/v1/movements?sku={sku}&limit=100" for sku in history_skus],
                    {"Authorization": f"Bearer {history_token}"},
                    None,
                ),
            }
            parts: dict[str, dict[str, list[dict[str, Any]]]] = {
                name: {label: [] for label in scenarios} for name in servers
            }
            # FastAPI builds each router's routes on their first request: warm every scenario
            # up first, so the rounds measure the steady state.
            for _, server_url in servers.values():
                for method, paths, headers, bodies in scenarios.values():
                    wrk.run(
                        driver.Plan(
                            server_url, method, paths, headers, bodies, 1.0, args.concurrency, 0
                        )
                    )
            for _ in range(args.rounds):
                for label, (method, paths, headers, bodies) in scenarios.items():
                    for name, (process, server_url) in servers.items():
                        plan = driver.Plan(
                            server_url,
                            method,
                            paths,
                            headers,
                            bodies,
                            args.duration,
                            args.concurrency,
                            0,
                        )
                        parts[name][label].append(measure(process.pid, plan))
            bulk = {
                name: bulk_ingest(process.pid, server_url, auth, skus, codes, args.bulk_requests)
                for name, (process, server_url) in servers.items()
            }
            floor = asyncio.run(
                asyncpg_floor(
                    to_libpq_dsn(app_url(settings)), tenant_id, product_ids, args.duration
                )
            )
            ledger_floor = asyncio.run(
                bulk_floor(
                    to_libpq_dsn(app_url(settings)), tenant_id, skus, codes, args.bulk_requests
                )
            )
            rows = {name: summarize_rounds(parts[name]) for name in servers}
            result = {
                "box": {
                    "cpus": os.cpu_count(),
                    "database": "external"
                    if os.environ.get("STOCKYARD_BENCH_DATABASE_URL")
                    else "embedded",
                },
                "duration_s": args.duration,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "server_tree": str(args.server_tree) if args.server_tree else None,
                "scenarios": rows["now"],
                "before": rows.get("before"),
                "asyncpg_floor_transactions_per_s": floor["transactions_per_s"],
                "product_get_over_livez_throughput": (
                    rows["now"][1]["throughput_per_s"] / rows["now"][0]["throughput_per_s"]
                ),
                "bulk": bulk["now"],
                "bulk_before": bulk.get("before"),
                "bulk_floor": ledger_floor,
            }
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(result, indent=2))
            report(result)
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


def summarize_rounds(parts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for label, runs in parts.items():
        requests = sum(run["requests"] for run in runs)
        elapsed = sum(run["elapsed"] for run in runs)
        rows.append(
            {
                "name": label,
                "requests": requests,
                "throughput_per_s": requests / elapsed,
                "p50_ms": max(run["p50_ms"] for run in runs),
                "p99_ms": max(run["p99_ms"] for run in runs),
                "non_2xx": sum(run["non_2xx"] for run in runs),
                "cpu_ms_per_request": 1000 * sum(r["cpu_seconds"] for r in runs) / requests,
                "rounds": [
                    {
                        "throughput_per_s": run["requests"] / run["elapsed"],
                        "cpu_ms_per_request": 1000 * run["cpu_seconds"] / run["requests"],
                        "p50_ms": run["p50_ms"],
                        "p99_ms": run["p99_ms"],
                    }
                    for run in runs
                ],
            }
        )
    return rows


def report(result: dict[str, Any]) -> None:
    before = result["before"]
    print(
        f"\n{'scenario (one worker, wrk -c16)':58} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU ms/req':>10}" + (f" {'before':>7} {'now/before':>10}" if before else "")
    )
    for index, row in enumerate(result["scenarios"]):
        line = (
            f"{row['name']:58} {row['throughput_per_s']:7.0f} {row['p50_ms']:7.1f} "
            f"{row['p99_ms']:7.1f} {row['cpu_ms_per_request']:10.2f}"
        )
        if before:
            old = before[index]["cpu_ms_per_request"]
            line += f" {old:7.2f} {row['cpu_ms_per_request'] / old:9.2f}x"
        print(line + (f"  ({row['non_2xx']} non-2xx)" if row["non_2xx"] else ""))
    print(
        f"asyncpg floor (16 connections, BEGIN + set_config + PK select + COMMIT): "
        f"{result['asyncpg_floor_transactions_per_s']:.0f} tx/s"
    )
    for name in ("bulk", "bulk_before"):
        bulk = result[name]
        if bulk:
            print(
                f"POST /api/v1/movements/bulk ({'now' if name == 'bulk' else 'before'}), "
                f"{bulk['requests']} x 10,000 receipts, one at a time: "
                f"{bulk['movements_per_s']:,.0f} movements/s, "
                f"{bulk['cpu_us_per_movement']:.1f} us server CPU per movement"
            )
    print(
        "bulk floor (the database alone: COPY 10,000 receipts to staging, resolve, insert into "
        f"the ledger, COMMIT): {result['bulk_floor']['movements_per_s']:,.0f} movements/s"
    )
    print(f"product GET / livez throughput: {result['product_get_over_livez_throughput']:.2f}x")
    print(f"\n{'goal (#15)':58} {'target':>12} {'now':>10}  met")
    for label, target, measured, at_most in goals(result):
        met = measured <= target if at_most else measured >= target
        bound = f"{'<=' if at_most else '>='} {target:,.1f}"
        print(f"{label:58} {bound:>12} {measured:10,.2f}  {'yes' if met else 'NO'}")


def goals(result: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """The goals of the hot-path work, each with this run's figure: (what, target, measured,
    whether the target is a ceiling)."""
    rows = {row["name"]: row for row in result["scenarios"]}
    history = next(row for name, row in rows.items() if name.startswith("GET /api/v1/movements"))
    return [
        (
            "product GET, CPU ms/request",
            1.0,
            rows["GET /api/v1/products/{id}"]["cpu_ms_per_request"],
            True,
        ),
        (
            "stock read, CPU ms/request",
            1.2,
            rows["GET /api/v1/stock?sku="]["cpu_ms_per_request"],
            True,
        ),
        (
            "receipt, CPU ms/request",
            2.0,
            rows["POST /api/v1/movements (receipt)"]["cpu_ms_per_request"],
            True,
        ),
        ("bulk ingest, movements/s end to end", 60_000, result["bulk"]["movements_per_s"], False),
        (
            "history page on the large ledger, p99 ms at 16 connections",
            40.0,
            history["p99_ms"],
            True,
        ),
        (
            "product GET throughput / livez throughput",
            0.2,
            result["product_get_over_livez_throughput"],
            False,
        ),
    ]
