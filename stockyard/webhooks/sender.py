"""One delivery attempt over HTTP, signed as Standard Webhooks asks
(https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp`, `webhook-signature`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore
from standardwebhooks.webhooks import Webhook

from stockyard import __version__
from stockyard.webhooks.targets import PublicOnlyBackend, TargetRefused

# What is read of a receiver's answer: enough to tell it answered, never its whole body.
RESPONSE_READ_LIMIT = 4096
# As long as the delivery log's error column.
ERROR_LENGTH = 200
USER_AGENT = f"Stockyard-Webhooks/{__version__}".encode()


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signature(secrets: list[str], *, message_id: str, timestamp: datetime, body: str) -> str:
    """`v1,<base64 HMAC-SHA256>` under each live secret, space-separated: during a rotation
    a receiver holding either secret verifies the message."""
    return " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in secrets
    )


class Sender:
    """Keeps connections to receivers alive between deliveries; never follows a redirect
    (httpcore does not), never reads a proxy from the environment."""

    def __init__(
        self,
        *,
        allow_private: bool,
        connect_timeout: float,
        timeout: float,
        max_connections: int,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=PublicOnlyBackend(allow_private=allow_private),
            max_connections=max_connections,
            keepalive_expiry=30.0,
        )

    async def send(self, url: str, *, message_id: str, body: bytes, secrets: list[str]) -> Outcome:
        timestamp = datetime.now(UTC)
        headers = [
            (b"content-type", b"application/json"),
            (b"user-agent", USER_AGENT),
            (b"webhook-id", message_id.encode()),
            (b"webhook-timestamp", str(int(timestamp.timestamp())).encode()),
            (
                b"webhook-signature",
                signature(
                    secrets, message_id=message_id, timestamp=timestamp, body=body.decode()
                ).encode(),
            ),
        ]
        timeouts = {
            "connect": self._connect_timeout,
            "read": self._timeout,
            "write": self._timeout,
            "pool": self._timeout,
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            # httpcore's timeouts bound each read and write; this bounds the whole attempt.
            async with (
                asyncio.timeout(self._timeout),
                self._pool.stream(
                    "POST", url, headers=headers, content=body, extensions={"timeout": timeouts}
                ) as response,
            ):
                status_code = response.status
                await _read_at_most(response, RESPONSE_READ_LIMIT)
        except TargetRefused as exc:
            status_code, error = None, f"refused: {exc}"
        except (TimeoutError, httpcore.TimeoutException):
            status_code, error = None, "timeout"
        except httpcore.ConnectError:
            status_code, error = None, "connection failed"
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol):
            # A receiver that answered its status line and then broke off still answered.
            error = "connection broken" if status_code is None else None
        except Exception as exc:  # any other failure is this attempt's, and is retried
            status_code, error = None, f"failed: {type(exc).__name__}"
        if error is not None:
            error = error[:ERROR_LENGTH]
        duration_ms = int((time.monotonic() - started) * 1000)
        return Outcome(status_code=status_code, error=error, duration_ms=duration_ms)

    async def close(self) -> None:
        await self._pool.aclose()


async def _read_at_most(response: httpcore.Response, limit: int) -> None:
    read = 0
    async for chunk in response.aiter_stream():
        read += len(chunk)
        if read >= limit:
            return
