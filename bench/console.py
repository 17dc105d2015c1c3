"""`python -m bench console`: what the console's stock page weighs and costs, for a tenant of
1,000 products in 10 locations (10,000 balance rows) with a ledger behind them.

Side by side in one run, on one `stockyard serve` worker: the console's stock page (its first
page of 50 rows, signed in through the console's cookie) against the API's `GET /api/v1/stock`
for the same 50 rows, as server CPU per request under wrk (the server process's own CPU time
over the run); the page's weight (HTML, stylesheet, script); its server time over sequential
requests; and, when Chromium is installed, the time a real browser takes to show it
(navigation start to the load event, Playwright driving Debian's chromium). Writes
bench/results/console.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench import driver, seed
from bench.cpu import measure
from bench.harness import PASSWORD, bench_stack, free_port, signup, start_server, wait_ready
from stockyard.core.database import owner_url, to_libpq_dsn

RESULTS = Path(__file__).resolve().parent / "results" / "console.json"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ASSET = re.compile(r'(?:href|src)="(/console/static/[^"]+)"')


def _console_cookie(url: str, slug: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    page = client.get("/console/sign-in")
    token = CSRF.search(page.text)
    assert token, page.text
    signed_in = client.post(
        "/console/sign-in",
        data={
            "csrf_token": token.group(1),
            "tenant": slug,
            "email": f"owner@{slug}.example.com",
            "password": PASSWORD,
        },
        headers={"Origin": url, "Sec-Fetch-Site": "same-origin"},
    )
    assert signed_in.status_code == 303, signed_in.text
    return client


def _sequential(client: httpx.Client, path: str, count: int) -> dict[str, Any]:
    timings, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:300]
        size = len(response.content)
    timings.sort()
    return {
        "path": path,
        "html_bytes": size,
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
    }


async def _browser_timing(url: str, cookie_value: str, path: str, rounds: int) -> Any:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = await browser.new_context()
        await context.add_cookies(
            [{"name": "stockyard_console", "value": cookie_value, "url": url}]
        )
        page = await context.new_page()
        loads = []
        for _ in range(rounds):
            await page.goto(url + path, wait_until="load")
            timing = await page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " return {ttfb: n.responseStart, dom: n.domContentLoadedEventEnd,"
                " load: n.loadEventEnd, bytes: n.transferSize}; }"
            )
            loads.append(timing)
        await browser.close()
    return {
        "rounds": rounds,
        "first_byte_ms_p50": round(statistics.median(t["ttfb"] for t in loads), 1),
        "dom_content_loaded_ms_p50": round(statistics.median(t["dom"] for t in loads), 1),
        "load_ms_p50": round(statistics.median(t["load"] for t in loads), 1),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench console", description=__doc__)
    parser.add_argument("--products", type=int, default=1_000)
    parser.add_argument("--movements", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved wrk rounds")
    parser.add_argument("--requests", type=int, default=200, help="sequential page loads")
    args = parser.parse_args(argv)

    with bench_stack("stockyard-bench-console-") as stack:
        port = free_port()
        process = start_server(
            {**stack.server_env, "STOCKYARD_LOG_LEVEL": "WARNING"},
            port,
            1,
            stack.workdir / "server.log",
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url)
            slug = f"console-{secrets.token_hex(3)}"
            tenant_id, token = signup(url, slug)
            skus, _, product_ids = asyncio.run(
                seed.seed_tenant(
                    to_libpq_dsn(owner_url(stack.settings)),
                    tenant_id,
                    products=args.products,
                    locations=10,
                    movements=args.movements,
                    seed=7,
                )
            )
            client = _console_cookie(url, slug)
            cookie_value = client.cookies["stockyard_console"]
            stock = client.get("/console/stock")
            assets = {path: len(client.get(path).content) for path in ASSET.findall(stock.text)}
            pages = [
                _sequential(client, path, args.requests)
                for path in (
                    "/console/stock",
                    "/console/stock?below=1",
                    f"/console/stock?q={skus[0][:7]}",
                    f"/console/products/{product_ids[0]}",
                    f"/console/products/{product_ids[0]}?days=365",
                    "/console/movements",
                )
            ]
            plans = {
                "console GET /console/stock": driver.Plan(
                    base_url=url,
                    method="GET",
                    paths=["/console/stock"],
                    headers={"Cookie": f"stockyard_console={cookie_value}"},
                    bodies=None,
                    duration=args.duration,
                    concurrency=8,
                    max_requests=10_000_000,
                ),
                "API GET /api/v1/stock?limit=50": driver.Plan(
                    base_url=url,
                    method="GET",
                    paths=["/api/v1/stock?limit=50"],
                    headers={"Authorization": f"Bearer {token}"},
                    bodies=None,
                    duration=args.duration,
                    concurrency=8,
                    max_requests=10_000_000,
                ),
            }
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in plans}
            for _ in range(args.rounds):
                for name, plan in plans.items():
                    runs[name].append(measure(process.pid, plan))
            cpu = {
                name: {
                    "requests": sum(r["requests"] for r in results),
                    "non_2xx": sum(r["non_2xx"] for r in results),
                    "cpu_ms_per_request": round(
                        1000
                        * sum(r["cpu_seconds"] for r in results)
                        / max(1, sum(r["requests"] for r in results)),
                        3,
                    ),
                    "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 2),
                }
                for name, results in runs.items()
            }
            browser = asyncio.run(_browser_timing(url, cookie_value, "/console/stock", 20))
        finally:
            process.terminate()
            process.wait(timeout=30)
    console_cpu = cpu["console GET /console/stock"]["cpu_ms_per_request"]
    api_cpu = cpu["API GET /api/v1/stock?limit=50"]["cpu_ms_per_request"]
    result = {
        "products": args.products,
        "locations": 10,
        "movements": args.movements,
        "stock_page": {
            "html_bytes": pages[0]["html_bytes"],
            "assets": assets,
            "total_bytes": pages[0]["html_bytes"] + sum(assets.values()),
        },
        "pages": pages,
        "cpu": cpu,
        "console_over_api_cpu": round(console_cpu / api_cpu, 2) if api_cpu else None,
        "browser": browser,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
