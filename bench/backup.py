"""`python -m bench backup`: how long `stockyard backup` and `stockyard restore` take, and how
big the backup is, for a tenant of 1,000,000 movements (1,000 products, 10 locations); and the
same for `stockyard tenants export` of that tenant. Each command is the real one, in a process
of its own. Against STOCKYARD_BENCH_DATABASE_URL (a superuser URL) the restore goes into a new
database on that server; embedded, into a new data directory. Writes
bench/results/backup.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import bench_stack, create_database
from stockyard.core.database import owner_url, to_libpq_dsn

RESULTS = Path(__file__).resolve().parent / "results" / "backup.json"


def _stockyard(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "stockyard.cli", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_")}, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"stockyard {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return elapsed, run.stdout


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench backup", description=__doc__)
    parser.add_argument("--movements", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with bench_stack("stockyard-bench-backup-") as stack:
        env = {**stack.server_env, "STOCKYARD_LOG_LEVEL": "WARNING"}
        env.pop("STOCKYARD_MIGRATE_ON_START", None)
        slug = f"backup-{secrets.token_hex(3)}"
        tenant_id = asyncio.run(_tenant(stack.settings, slug))
        started = time.perf_counter()
        asyncio.run(
            seed.seed_tenant(
                to_libpq_dsn(owner_url(stack.settings)),
                tenant_id,
                products=1_000,
                locations=10,
                movements=args.movements,
                seed=11,
            )
        )
        seeded = time.perf_counter() - started
        backup = stack.workdir / "bench.backup"
        backup_seconds, _ = _stockyard(env, "backup", str(backup))
        export = stack.workdir / "tenant.zip"
        export_seconds, _ = _stockyard(env, "tenants", "export", slug, str(export))
        if os.environ.get("STOCKYARD_BENCH_DATABASE_URL"):
            name = f"{owner_url(stack.settings).database}_restored"
            create_database(stack.admin_url, name)
            target = {"STOCKYARD_DATABASE_URL": stack.admin_url.rsplit("/", 1)[0] + "/" + name}
        else:
            target = {"STOCKYARD_DATA_DIR": str(stack.workdir / "restored")}
        restore_env = {k: v for k, v in env.items() if k != "STOCKYARD_DATABASE_URL"} | target
        restore_seconds, restore_output = _stockyard(restore_env, "restore", str(backup))
        if "STOCKYARD_DATABASE_URL" in target:
            create_database(stack.admin_url, name, drop=True)
    result: dict[str, Any] = {
        "movements": args.movements,
        "seed_seconds": round(seeded, 1),
        "backup_seconds": round(backup_seconds, 1),
        "backup_bytes": backup.stat().st_size,
        "restore_seconds": round(restore_seconds, 1),
        "restore_said": restore_output.strip().splitlines()[-2:],
        "tenant_export_seconds": round(export_seconds, 1),
        "tenant_export_bytes": export.stat().st_size,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


async def _tenant(settings: Any, slug: str) -> Any:
    """A tenant row to seed into (the seeder writes products, locations, the ledger and the
    balances that sum it)."""
    import uuid

    import asyncpg

    connection = await asyncpg.connect(to_libpq_dsn(owner_url(settings)))
    try:
        tenant_id = uuid.uuid4()
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
            await connection.execute(
                "INSERT INTO tenant (id, slug, name) VALUES ($1, $2, $3)", tenant_id, slug, slug
            )
        return tenant_id
    finally:
        await connection.close()
