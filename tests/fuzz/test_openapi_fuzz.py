"""Schemathesis `--checks all`, its own command line, against the live OpenAPI document with a
real token on a real server: every operation through its examples, coverage, fuzzing and
stateful phases, with zero failures (one check excluded, with its reason, below).

Rejections the document cannot express are listed, each with its reason, in
tests/fuzz/schemathesis.toml. Bounded for CI (STOCKYARD_FUZZ_EXAMPLES per operation, a fixed
seed); raise the count and pass STOCKYARD_FUZZ_SEED=random locally to search further.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stockyard.core.settings import Settings
from tests.support.helpers import PASSWORD
from tests.support.live import LiveServer

pytestmark = pytest.mark.interop

EXAMPLES = os.environ.get("STOCKYARD_FUZZ_EXAMPLES", "25")
SEED = os.environ.get("STOCKYARD_FUZZ_SEED", "20261123")
ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[tuple[LiveServer, str]]:
    # The fuzzer sends thousands of requests with one token; the limiter is tested elsewhere.
    unlimited = settings.model_copy(
        update={
            "rate_limit_per_minute": 10**7,
            "rate_limit_burst": 10**6,
            "ip_rate_limit_per_minute": 10**7,
        }
    )
    with LiveServer(unlimited) as server:
        slug = "fuzz-owner"
        email = f"owner@{slug}.example.com"
        httpx.post(
            f"{server.url}/api/v1/tenants",
            json={"name": "Fuzz", "slug": slug, "owner_email": email, "owner_password": PASSWORD},
        )
        token = httpx.post(
            f"{server.url}/api/v1/auth/token",
            data={
                "grant_type": "password",
                "username": email,
                "password": PASSWORD,
                "tenant": slug,
            },
        ).json()["access_token"]
        yield server, token


def test_every_operation_passes_schemathesis_checks_all(
    live_server: tuple[LiveServer, str],
) -> None:
    server, token = live_server
    operations = sum(
        len(methods) for methods in httpx.get(f"{server.url}/openapi.json").json()["paths"].values()
    )
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        # DELETE is soft wherever it exists: it archives a product or location (which stays
        # readable with `archived_at`: its ledger history refers to it) and deactivates a user
        # (readable, `is_active: false`), as the README documents. This one check assumes a
        # DELETE makes the resource 404; its per-operation and per-phase settings in
        # schemathesis.toml are not applied under `--checks all`, so it is excluded here.
        "--exclude-checks",
        "use_after_free",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        EXAMPLES,
        # One worker: with two, Hypothesis describes filters by parsing lambda sources in two
        # threads at once, which trips a CPython 3.11 AST bug ("SystemError: AST constructor
        # recursion depth mismatch", a Schemathesis runtime error, not an API failure).
        "--workers",
        "1",
        "--no-color",
    ]
    if SEED != "random":
        command += ["--seed", SEED]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20000:]
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert tested is not None, report[-4000:]
    assert int(tested.group(1)) == operations >= 35, report[-4000:]
