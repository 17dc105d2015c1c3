"""`python -m bench webhooks`: events and their webhook deliveries, measured in one run.

Starts one `stockyard serve --workers 1` (its dispatcher delivering) on a throwaway database
and a receiver on the loopback in this process, then measures:

- latency from commit to delivery: single receipts, a few at a time, each timed from the
  API's answer (the commit is done by then) to the receiver getting its `stock.changed`;
- delivery rate: one 10,000-line bulk batch over 2,000 balances, 2,000 events at once, timed
  from the answer to the last arrival;
- what subscribing costs a bulk batch: the same batches into a tenant with an endpoint and
  one without, interleaved, events written per second in each.

Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.harness import BenchStack, bench_stack, free_port, signup, start_server, wait_ready
from bench.stats import summarize

RESULTS = Path(__file__).resolve().parent / "results" / "webhooks.json"


class Receiver:
    """Answers 200 at once and notes when each message arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, float] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="off",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        message_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        self.arrivals.setdefault(message_id, time.perf_counter())
        self.bodies.setdefault(message_id, json.loads(body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, seconds: float = 300) -> None:
        deadline = time.perf_counter() + seconds
        while len(self.arrivals) < count:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{len(self.arrivals)} of {count} deliveries arrived")
            await asyncio.sleep(0.005)


async def _setup(
    client: httpx.AsyncClient, token: str, skus: int, locations: int
) -> tuple[list[str], list[str]]:
    headers = {"Authorization": f"Bearer {token}"}
    sku_list = [f"WB-{i:04d}" for i in range(skus)]
    code_list = [f"L-{i:03d}" for i in range(locations)]
    for sku in sku_list:
        (
            await client.post("/api/v1/products", json={"sku": sku, "name": sku}, headers=headers)
        ).raise_for_status()
    for code in code_list:
        (
            await client.post(
                "/api/v1/locations", json={"code": code, "name": code}, headers=headers
            )
        ).raise_for_status()
    return sku_list, code_list


async def _subscribe(client: httpx.AsyncClient, token: str, url: str) -> None:
    (
        await client.post(
            "/api/v1/webhooks",
            json={"url": url, "events": ["stock.changed"]},
            headers={"Authorization": f"Bearer {token}"},
        )
    ).raise_for_status()


def _bulk_body(skus: list[str], codes: list[str], rng: random.Random) -> bytes:
    pairs = [(sku, code) for sku in skus for code in codes]
    items = [
        {"sku": sku, "location": code, "kind": "receipt", "quantity": rng.randint(1, 5)}
        for sku, code in (pairs * (10_000 // len(pairs) + 1))[:10_000]
    ]
    return json.dumps({"items": items}).encode()


async def run(args: argparse.Namespace, stack: BenchStack) -> dict[str, Any]:
    receiver = Receiver()
    serving = asyncio.create_task(receiver.server.serve())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **stack.server_env,
        "STOCKYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "STOCKYARD_LOG_LEVEL": "WARNING",
    }
    server = start_server(env, port, 1, stack.workdir / "server.log")
    try:
        await asyncio.to_thread(wait_ready, url)
        subscribed_id, subscribed = signup(url, f"wh-{secrets.token_hex(3)}")
        _, plain = signup(url, f"wh-{secrets.token_hex(3)}")
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            skus, codes = await _setup(client, subscribed, 40, 50)
            await _setup(client, plain, 40, 50)
            await _subscribe(client, subscribed, receiver.url)

            # Latency: single receipts, `concurrency` at a time.
            sent: dict[str, float] = {}
            rng = random.Random(1)

            async def receipts(count: int) -> None:
                for _ in range(count):
                    response = await client.post(
                        "/api/v1/movements",
                        json={
                            "sku": rng.choice(skus),
                            "location": rng.choice(codes),
                            "kind": "receipt",
                            "quantity": 1,
                        },
                        headers={"Authorization": f"Bearer {subscribed}"},
                    )
                    response.raise_for_status()
                    sent[response.json()["movement"]["id"]] = time.perf_counter()

            started = time.perf_counter()
            per_writer = args.receipts // args.concurrency
            await asyncio.gather(*(receipts(per_writer) for _ in range(args.concurrency)))
            await receiver.wait_for(len(sent))
            latencies = []
            for message_id, message in receiver.bodies.items():
                (movement_id,) = message["data"]["movement_ids"]
                latencies.append(receiver.arrivals[message_id] - sent[movement_id])
            steady = summarize(
                "commit to delivery, single receipts",
                latencies,
                time.perf_counter() - started,
            )

            # Delivery rate: one bulk batch's 2,000 events at once.
            before = len(receiver.arrivals)
            body = _bulk_body(skus, codes, random.Random(2))
            headers = {
                "Authorization": f"Bearer {subscribed}",
                "Content-Type": "application/json",
            }
            (
                await client.post("/api/v1/movements/bulk", content=body, headers=headers)
            ).raise_for_status()
            answered = time.perf_counter()
            events = len(skus) * len(codes)
            await receiver.wait_for(before + events)
            last = max(list(receiver.arrivals.values())[before:])
            burst = {
                "events": events,
                "seconds_to_last_delivery": last - answered,
                "deliveries_per_s": events / (last - answered),
            }

            # Bulk with and without a subscribed endpoint, interleaved.
            timings: dict[str, list[float]] = {"subscribed": [], "not subscribed": []}
            for round_number in range(args.rounds):
                body = _bulk_body(skus, codes, random.Random(10 + round_number))
                for label, token in (("subscribed", subscribed), ("not subscribed", plain)):
                    t0 = time.perf_counter()
                    (
                        await client.post(
                            "/api/v1/movements/bulk",
                            content=body,
                            headers={
                                "Authorization": f"Bearer {token}",
                                "Content-Type": "application/json",
                            },
                        )
                    ).raise_for_status()
                    timings[label].append(time.perf_counter() - t0)
            bulk = {
                label: {
                    "batches": len(times),
                    "movements_per_s": 10_000 * len(times) / sum(times),
                    "events_written_per_s": events * len(times) / sum(times),
                }
                for label, times in timings.items()
            }
            ratio = (
                bulk["subscribed"]["movements_per_s"] / bulk["not subscribed"]["movements_per_s"]
            )
        return {
            "tenant": str(subscribed_id),
            "steady": steady,
            "burst": burst,
            "bulk": bulk,
            "bulk_ratio_subscribed_to_not": ratio,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        receiver.server.should_exit = True
        await serving


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench webhooks", description=__doc__)
    parser.add_argument("--receipts", type=int, default=400, help="single receipts, in all")
    parser.add_argument("--concurrency", type=int, default=4, help="receipts in flight")
    parser.add_argument("--rounds", type=int, default=5, help="bulk batches per tenant")
    args = parser.parse_args(argv)
    with bench_stack("stockyard-bench-webhooks-") as stack:
        result = asyncio.run(run(args, stack))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    steady, burst, bulk = result["steady"], result["burst"], result["bulk"]
    print(
        f"commit to delivery ({steady['requests']} receipts): p50 {steady['p50_ms']:.1f} ms, "
        f"p99 {steady['p99_ms']:.1f} ms"
    )
    print(
        f"burst: {burst['events']} events delivered in {burst['seconds_to_last_delivery']:.2f} s "
        f"({burst['deliveries_per_s']:.0f}/s)"
    )
    for label in ("subscribed", "not subscribed"):
        row = bulk[label]
        print(
            f"bulk, {label}: {row['movements_per_s']:,.0f} movements/s, "
            f"{row['events_written_per_s']:,.0f} events written/s"
        )
    print(f"bulk subscribed / not: {result['bulk_ratio_subscribed_to_not']:.2f}x")
    print(f"wrote {RESULTS}")
