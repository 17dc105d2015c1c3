"""Prometheus metrics. Labels are bounded: route templates and status codes, never ids.

With several worker processes (`stockyard serve --workers N`), the serve command sets
PROMETHEUS_MULTIPROC_DIR before the workers start: each worker's values then live in files
there, and a scrape of any worker reads them all, so /metrics shows totals for the whole
server rather than one worker's counts (which Prometheus would read as resets).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)


def exposition_registry() -> CollectorRegistry:
    """What a scrape reads: this process's metrics, or every worker's when they share files."""
    if not os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        return REGISTRY
    shared = CollectorRegistry()
    multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
    return shared


REQUESTS = Counter(
    "stockyard_http_requests",
    "HTTP requests by route template, method and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "stockyard_http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["method", "route"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "stockyard_rate_limited_responses", "Requests answered 429.", registry=REGISTRY
)
REFRESH_REUSE = Counter(
    "stockyard_refresh_reuse_detections",
    "Used refresh tokens presented again (their family was revoked).",
    registry=REGISTRY,
)
DB_POOL_IN_USE = Gauge(
    "stockyard_db_pool_connections_in_use",
    "Database connections checked out of the workers' pools, by pool: `sessions` (the ORM "
    "sessions of most requests) and `reads` (the driver's own pool of the hot read routes).",
    ["pool"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "stockyard_db_pool_connections_max",
    "Database connections the workers' pools may hold, by pool (each STOCKYARD_DB_POOL_SIZE).",
    ["pool"],
    registry=REGISTRY,
)
REDIS_FAIL_OPEN = Counter(
    "stockyard_redis_fail_open_requests",
    "Requests let through without Redis (STOCKYARD_RATE_LIMIT_FAIL_OPEN): unlimited, with "
    "revocation checked in PostgreSQL.",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "stockyard_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retrying (failed, tried again later), "
    "failed (given up, or the endpoint is gone).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "stockyard_webhook_attempt_duration_seconds",
    "How long one webhook delivery attempt took, answered or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
    registry=REGISTRY,
)
WEBHOOK_DELIVERY_LATENCY = Histogram(
    "stockyard_webhook_delivery_latency_seconds",
    "From the change that raised an event to its webhook being delivered, retries included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 3600, 86400),
    registry=REGISTRY,
)
WEBHOOK_QUEUE_DEPTH = Gauge(
    "stockyard_webhook_due_deliveries",
    "Webhook deliveries due and not yet claimed, across all tenants.",
    registry=REGISTRY,
    multiprocess_mode="max",
)
NODE_INFO = Gauge(
    "stockyard_node_info",
    "Always 1: which node (STOCKYARD_NODE_NAME) and version these metrics come from, to join "
    "on when several nodes are scraped.",
    ["node", "version"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
