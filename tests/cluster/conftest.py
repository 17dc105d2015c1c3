"""The `cluster` group: the API on a Redis Cluster of three masters, real `redis-server`
processes on loopback ports, with STOCKYARD_REDIS_CLUSTER=true and the URL of one node.

The limiter's own tests (tests/auth/test_rate_limit.py) run again here: their `stack_factory`
below starts the API on this cluster, and "stopping Redis" stops its masters until they are
started again, empty; a test of its own stops one master alone. Run with
`pytest -m cluster` (`.ci/run` does); it needs `redis-server` and `redis-cli`.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster

from stockyard.core.settings import Settings
from tests.conftest import make_settings, running_app
from tests.support.services import TestServices

MASTERS = 3


def _cluster_port() -> int:
    """A free port for a node whose cluster bus (the port + 10,000) is free too: Redis takes
    both, so the node's own must be 55535 or lower."""
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class Cluster:
    """Three masters on loopback ports. `stop()` and `start_redis()` take them down and bring
    them back empty, the way tests/auth/test_rate_limit.py stops its own Redis."""

    def __init__(self, workdir: Path, *, server: str, cli: str) -> None:
        self.workdir, self.server, self.cli = workdir, server, cli
        self.ports = [_cluster_port() for _ in range(MASTERS)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _start_node(self, port: int) -> None:
        directory = self.workdir / str(port)
        directory.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._cli(port, "PING", expect="PONG")

    def _cli(self, port: int, *command: str, expect: str | None = None) -> str:
        deadline = time.monotonic() + 20
        while True:
            result = subprocess.run(
                [self.cli, "-p", str(port), *command],
                capture_output=True,
                text=True,
                check=False,
            )
            if expect is None or expect in result.stdout:
                return result.stdout
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis {port}: {command} said {result.stdout}{result.stderr}")
            time.sleep(0.1)

    def start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
        )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        for port in self.ports:
            self._cli(port, "CLUSTER", "INFO", expect="cluster_state:ok")

    def stop(self, ports: list[int] | None = None) -> None:
        """Every master down (as the limiter's tests stop their Redis), or just `ports`."""
        for port in ports or self.ports:
            process = self.processes[port]
            process.terminate()
            process.wait(timeout=15)

    def start_redis(self) -> str:
        """The stopped masters back, their cluster membership kept and their data gone."""
        for port in self.ports:
            if self.processes[port].poll() is not None:
                self._start_node(port)
        self.wait_healthy()
        return self.redis_url

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.fail("the cluster group needs redis-server and redis-cli (apt-get install redis)")
    workdir = Path(tempfile.mkdtemp(prefix="stockyard-redis-cluster-"))
    cluster = Cluster(workdir, server=server, cli=cli)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)


def cluster_settings(services: TestServices, cluster: Cluster, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": cluster.redis_url,
        "redis_cluster": True,
        "redis_key_prefix": services.redis_prefix,
        **overrides,
    }
    return make_settings(services, **values)


class Stack:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, redis: Cluster) -> None:
        self.app, self.client, self.redis = app, client, redis

    async def raw_redis(self) -> RedisCluster:
        return RedisCluster.from_url(self.redis.redis_url)


@pytest.fixture
async def stack_factory(
    services: TestServices, settings: Settings, redis_cluster: Cluster
) -> AsyncIterator[Any]:
    """tests/auth/test_rate_limit.py's stack, on the cluster; whatever a test stopped is
    started again (and the cluster healthy) before the next."""
    contexts = []

    async def start(**overrides: Any) -> Stack:
        context = running_app(
            cluster_settings(services, redis_cluster, redis_key_prefix="", **overrides)
        )
        contexts.append(context)
        app, client = await context.__aenter__()
        return Stack(app, client, redis_cluster)

    yield start
    for context in contexts:
        await context.__aexit__(None, None, None)
    redis_cluster.start_redis()


@pytest.fixture(scope="session")
async def app_and_client(
    services: TestServices, settings: Settings, redis_cluster: Cluster
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The suite's shared app, on the cluster, for the token tests run again here."""
    async with running_app(cluster_settings(services, redis_cluster)) as pair:
        yield pair
