"""The front door of every authenticated route: bearer token -> verified claims -> limiter.

Runs before any database work: a forged, expired, revoked or over-limit token costs one JWT
verification and one Redis round trip, never a PostgreSQL connection.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stockyard.api.services import Services, ServicesDep
from stockyard.auth.limiter import Revocation
from stockyard.auth.tokens import AccessClaims, verify_access_token
from stockyard.core.errors import Unauthorized

# auto_error=False: a missing header becomes our 401 envelope, not FastAPI's bare 403.
_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/token.")


@dataclass(frozen=True, slots=True)
class Authenticated:
    claims: AccessClaims
    # Whether Redis already vouched for the family; if not, the tenant session asks PostgreSQL.
    revocation: Revocation


async def authenticate(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Authenticated:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer access token is required.")
    settings = services.settings
    claims = await verify_access_token(
        services.keyring,
        credentials.credentials,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    structlog.contextvars.bind_contextvars(
        tenant_id=str(claims.tenant_id), subject=str(claims.subject)
    )
    request.state.claims = claims
    if not settings.rate_limit_enabled:
        return Authenticated(claims=claims, revocation=Revocation.UNKNOWN)
    per_minute, burst = await services.tenant_limits.get(claims.tenant_id)
    decision = await services.limiter.check_session(
        claims.session_id, per_minute=per_minute, burst=burst
    )
    if decision.limit:
        request.state.rate_limit_headers = decision.headers()
    if decision.revocation is Revocation.REVOKED:
        raise Unauthorized("The session has been revoked.")
    decision.raise_if_limited()
    return Authenticated(claims=claims, revocation=decision.revocation)


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


async def limit_by_ip(request: Request, services: ServicesDep) -> None:
    """Brute-force guard for unauthenticated endpoints (token, signup), per client address."""
    settings = services.settings
    address = client_ip(request, settings.trusted_proxies)
    decision = await services.limiter.check_key(
        f"ip:{address}", per_minute=settings.ip_rate_limit_per_minute
    )
    decision.raise_if_limited()


async def limit_login(services: Services, *, tenant: str, username: str) -> None:
    """Password guesses per (tenant, username), whichever addresses they come from."""
    digest = hashlib.sha256(f"{tenant}\x00{username.strip().lower()}".encode()).hexdigest()[:32]
    decision = await services.limiter.check_key(
        f"login:{digest}", per_minute=services.settings.login_rate_limit_per_minute
    )
    decision.raise_if_limited()
