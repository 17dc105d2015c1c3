"""`stockyard serve --workers 2`: every scrape of /metrics shows the whole server's totals,
whichever worker answers it, parsed by prometheus-client's own parser and checked by
Prometheus's own linter (`promtool check metrics`, installed by .ci/run)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockyard.core.settings import Settings
from tests.support.cli import cli_env
from tests.support.serve import free_port, start_serve


def _count(text: str, route: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "stockyard_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("route") == route:
                total += sample.value
    return total


@pytest.fixture(scope="module")
async def scrapes(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Eight scrapes of a two-worker server after 30 GETs of /livez and one of the document."""
    tmp_path = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        **cli_env(settings),
        "STOCKYARD_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "STOCKYARD_MIGRATE_ON_START": "false",
        # Where serve creates the workers' shared metrics directory: checked empty after.
        "TMPDIR": str(tmp_path),
    }
    server = await start_serve(env, port=port, workers=2, cwd=tmp_path)
    fresh = httpx.Limits(max_keepalive_connections=0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, limits=fresh
        ) as client:
            for _ in range(30):
                assert (await client.get("/livez")).status_code == 200
            assert (await client.get("/openapi.json")).status_code == 200
            texts = [(await client.get("/metrics")).text for _ in range(8)]
    finally:
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 30) == 0
    # serve removes the workers' shared metrics directory when it stops.
    assert not list(tmp_path.glob("stockyard-metrics-*"))
    return texts


def test_scrapes_show_totals_for_all_workers(scrapes: list[str]) -> None:
    counts = [_count(text, "/livez") for text in scrapes]
    # Every scrape, from either worker, sees all 30: totals, never one worker's share.
    assert all(count >= 30 for count in counts), counts
    assert counts == sorted(counts)
    assert all(_count(text, "/openapi.json") >= 1 for text in scrapes)


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (.ci/run installs Debian's prometheus package for it)",
)
def test_promtool_accepts_the_scrape(scrapes: list[str]) -> None:
    check = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=scrapes[-1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
