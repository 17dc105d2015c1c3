"""The load driver: a separate process that sends bounded traffic and reports latencies.

Bounded twice: it stops after `duration` seconds or `max_requests` requests, whichever comes
first. It only ever talks to the server URL it is given (the bench's own, on loopback).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Plan:
    base_url: str
    method: str
    paths: list[str]
    headers: dict[str, str]
    bodies: list[Any] | None
    duration: float
    concurrency: int
    max_requests: int


async def _drive(plan: Plan) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = itertools.count()
    deadline = time.perf_counter() + plan.duration
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    async with httpx.AsyncClient(
        base_url=plan.base_url, headers=plan.headers, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            rng = random.Random()
            while time.perf_counter() < deadline:
                if next(counter) >= plan.max_requests:
                    return
                path = rng.choice(plan.paths)
                body = rng.choice(plan.bodies) if plan.bodies else None
                started = time.perf_counter()
                response = await client.request(plan.method, path, json=body)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "elapsed": elapsed, "statuses": statuses}


def run(plan: Plan, queue: Any) -> None:
    queue.put(json.dumps(asyncio.run(_drive(plan))))
