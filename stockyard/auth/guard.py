"""Throttles for the doors that take no token: guesses per client address (token endpoint,
signup) and per account (sign-ins, password changes)."""

from __future__ import annotations

import hashlib
import ipaddress
import uuid

from fastapi import Request

from stockyard.auth.limiter import LimiterDep, RateLimiter
from stockyard.core.dependencies import SettingsDep
from stockyard.core.settings import Settings


def client_ip(request: Request, trusted_proxies: list[str]) -> str:
    """The peer address, or the first untrusted hop of X-Forwarded-For when the peer is a
    proxy we were told to trust. Never a header from an untrusted peer: it could be forged."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return peer


def _is_trusted(address: str, trusted_proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted_proxies)


async def limit_by_ip(request: Request, settings: SettingsDep, limiter: LimiterDep) -> None:
    """Brute-force guard for unauthenticated endpoints (token, signup), per client address.
    Its burst is a tenth of the per-minute rate: a flood is cut off after a handful."""
    address = client_ip(request, settings.trusted_proxies)
    per_minute = settings.ip_rate_limit_per_minute
    decision = await limiter.check_key(
        f"ip:{address}", policy="ip", per_minute=per_minute, burst=max(1, per_minute // 10)
    )
    decision.raise_if_limited()


def login_account(tenant: uuid.UUID | str, email: str) -> str:
    """The guard's name for one account: the tenant (its id once known, else the slug given)
    and the normalised email, hashed so no address or email sits in Redis in clear."""
    return hashlib.sha256(f"{tenant}\x00{email.strip().lower()}".encode()).hexdigest()[:32]


async def limit_login(
    limiter: RateLimiter, settings: Settings, *, account: str, address: str
) -> None:
    """Password guesses against one account (sign-ins, and wrong current passwords on
    /me/password): a hard limit per (account, client address), and a much higher ceiling per
    account across all addresses. An attacker at one address exhausts only their own
    allowance, not the user's: locking the user out takes enough addresses to reach the
    ceiling (ten times the per-address limit by default), which also caps distributed
    guessing."""
    place = hashlib.sha256(address.encode()).hexdigest()[:16]
    per_address = settings.login_rate_limit_per_minute
    decision = await limiter.check_key(
        f"login:{account}:{place}",
        policy="login",
        per_minute=per_address,
        burst=max(1, per_address // 2),
    )
    decision.raise_if_limited()
    ceiling = settings.login_account_rate_limit_per_minute
    decision = await limiter.check_key(
        f"login:{account}", policy="account", per_minute=ceiling, burst=max(1, ceiling // 4)
    )
    decision.raise_if_limited()
