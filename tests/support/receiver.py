"""A webhook receiver on a loopback port: a real HTTP server (uvicorn) that records every
request it gets and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.support.serve import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    # Statuses to answer, in order; once used up, 200.
    statuses: list[int] = field(default_factory=list)
    # While cleared, requests are recorded and then held unanswered.
    answering: asyncio.Event = field(default_factory=asyncio.Event)
    # Ports are reused across tests: a path of its own tells this receiver's deliveries from
    # those of an earlier test's endpoint that still retries to the same port.
    path: str = field(default_factory=lambda: f"/hook/{secrets.token_hex(8)}")

    def __post_init__(self) -> None:
        self.answering.set()
        self._arrived = asyncio.Condition()
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> Receiver:
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        self.answering.set()
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def wait_for(self, count: int, seconds: float = 30) -> list[Received]:
        """Once at least `count` requests have arrived (else the test fails)."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), seconds
            )
        return list(self.received)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] != self.path:
            # Not ours: gone, which also disables the endpoint that sent it.
            await send({"type": "http.response.start", "status": 410, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        async with self._arrived:
            self.received.append(Received(headers=headers, body=body))
            self._arrived.notify_all()
        await self.answering.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
