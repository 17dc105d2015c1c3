"""`python -m bench pooler`: the API straight to PostgreSQL vs through PgBouncer in
transaction mode with 4 server connections, side by side in one run.

Needs pgbouncer and a PostgreSQL on TCP (STOCKYARD_BENCH_DATABASE_URL). Two `stockyard serve
--workers 1` run on one throwaway database, one direct (pool of 20), one with
STOCKYARD_DATABASE_POOLER=transaction through PgBouncer (pool of 20 client connections sharing
4 server connections); each scenario runs under the same load on both, interleaved in rounds,
and the server process's CPU time is read around each run. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench import driver
from bench.cpu import cpu_seconds
from bench.harness import bench_stack, free_port, load, signup, start_server, wait_ready
from bench.pgbouncer import running_pgbouncer
from stockyard.core.settings import APP_ROLE

RESULTS = Path(__file__).resolve().parent / "results" / "pooler.json"
SERVER_CONNECTIONS = 4


def _seed(url: str, token: str, products: int) -> tuple[list[str], list[str], str]:
    headers = {"Authorization": f"Bearer {token}"}
    ids, skus = [], []
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        for index in range(products):
            created = client.post(
                "/api/v1/products", json={"sku": f"PB-{index:04d}", "name": "pooled"}
            )
            created.raise_for_status()
            ids.append(created.json()["id"])
            skus.append(created.json()["sku"])
        client.post("/api/v1/locations", json={"code": "PB-L", "name": "L"}).raise_for_status()
    return ids, skus, "PB-L"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pooler", description=__doc__)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)

    with bench_stack("stockyard-bench-pooler-") as stack:
        direct = make_url(str(stack.settings.database_url))
        if not direct.host:
            raise SystemExit("needs STOCKYARD_BENCH_DATABASE_URL naming PostgreSQL on TCP")
        with running_pgbouncer(
            host=direct.host,
            port=direct.port or 5432,
            users=[APP_ROLE, str(direct.username)],
            server_connections=SERVER_CONNECTIONS,
        ) as bouncer_port:
            through = direct.set(host="127.0.0.1", port=bouncer_port).render_as_string(False)
            envs = {
                "direct": {**stack.server_env, "STOCKYARD_LOG_LEVEL": "WARNING"},
                "pgbouncer": {
                    **stack.server_env,
                    "STOCKYARD_LOG_LEVEL": "WARNING",
                    "STOCKYARD_DATABASE_URL": through,
                    "STOCKYARD_DATABASE_POOLER": "transaction",
                },
            }
            servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
            try:
                for name, env in envs.items():
                    port = free_port()
                    process = start_server(env, port, 1, stack.workdir / f"{name}.log")
                    servers[name] = (process, f"http://127.0.0.1:{port}")
                for _, url in servers.values():
                    wait_ready(url)
                first_url = servers["direct"][1]
                _, token = signup(first_url, f"pooler-{secrets.token_hex(3)}")
                ids, skus, code = _seed(first_url, token, 200)
                auth = {"Authorization": f"Bearer {token}"}
                rng = random.Random(3)
                scenarios: dict[str, tuple[str, list[str], dict[str, str], list[Any] | None]] = {
                    "GET /api/v1/products/{id}": (
                        "GET",
                        [f"/api/v1/products/{product_id}" for product_id in ids],
                        auth,
                        None,
                    ),
                    "POST /api/v1/movements (receipt)": (
                        "POST",
                        ["/api/v1/movements"],
                        auth,
                        [
                            {
                                "sku": rng.choice(skus),
                                "location": code,
                                "kind": "receipt",
                                "quantity": 1,
                            }
                            for _ in range(500)
                        ],
                    ),
                }
                rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
                for _ in range(args.rounds):
                    for label, (method, paths, headers, bodies) in scenarios.items():
                        for name, (process, url) in servers.items():
                            plan = driver.Plan(
                                url,
                                method,
                                paths,
                                headers,
                                bodies,
                                args.duration,
                                args.concurrency,
                                0,
                            )
                            before = cpu_seconds(process.pid)
                            result = load(plan)
                            result["cpu_ms_per_request"] = (
                                (cpu_seconds(process.pid) - before) * 1000 / result["requests"]
                            )
                            rows.setdefault(label, {}).setdefault(name, []).append(result)
            finally:
                for process, _ in servers.values():
                    process.send_signal(signal.SIGTERM)
                for process, _ in servers.values():
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()

    summary: dict[str, Any] = {"server_connections": SERVER_CONNECTIONS, "scenarios": {}}
    print(f"{'scenario':36} {'path':10} {'req/s':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    for label, by_server in rows.items():
        summary["scenarios"][label] = {}
        for name, runs in by_server.items():
            requests = sum(run["requests"] for run in runs)
            elapsed = sum(run["elapsed"] for run in runs)
            figures = {
                "requests_per_s": requests / elapsed,
                "p99_ms": max(run["p99_ms"] for run in runs),
                "cpu_ms_per_request": sum(run["cpu_ms_per_request"] for run in runs) / len(runs),
                "non_2xx": sum(run["non_2xx"] for run in runs),
            }
            summary["scenarios"][label][name] = figures
            print(
                f"{label:36} {name:10} {figures['requests_per_s']:8.0f} "
                f"{figures['p99_ms']:8.1f} {figures['cpu_ms_per_request']:11.2f}"
            )
        pair = summary["scenarios"][label]
        pair["ratio_pgbouncer_to_direct"] = (
            pair["pgbouncer"]["requests_per_s"] / pair["direct"]["requests_per_s"]
        )
        print(f"{'':36} pgbouncer/direct: {pair['ratio_pgbouncer_to_direct']:.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")
