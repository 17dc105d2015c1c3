"""The front door of every authenticated route: bearer token -> verified claims -> limiter.

Runs before any database work: a forged, expired, revoked or over-limit token costs one JWT
verification and one Redis round trip, never a PostgreSQL connection.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2

from stockyard.api.services import Services, ServicesDep
from stockyard.auth.limiter import Revocation
from stockyard.auth.scopes import Scope
from stockyard.auth.tokens import AccessClaims, verify_access_token
from stockyard.core.errors import InvalidToken, Unauthorized

# auto_error=False: a missing header becomes our 401 envelope, not FastAPI's bare 403.
_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/token.")
# The same bearer token, described as the OAuth 2.0 flows that issue it, so the document
# (and /docs, which can sign in with it) names the token endpoint. Never read: _bearer is.
_oauth2 = OAuth2(
    flows=OAuthFlows(
        password=OAuthFlowPassword(
            tokenUrl="/api/v1/auth/token", scopes={scope.value: scope.name for scope in Scope}
        ),
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/api/v1/auth/token", scopes={scope.value: scope.name for scope in Scope}
        ),
    ),
    auto_error=False,
    description="Password grant (username = email, plus a `tenant` form field) or client "
    "credentials; send the access token as a bearer token.",
)


@dataclass(frozen=True, slots=True)
class Authenticated:
    claims: AccessClaims
    # Whether Redis already vouched for the family; if not, the tenant session asks PostgreSQL.
    revocation: Revocation


async def authenticate(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _documented: Annotated[str | None, Depends(_oauth2)],
) -> Authenticated:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer access token is required.")
    settings = services.settings
    claims = await verify_access_token(
        services.keyring,
        credentials.credentials,
        issuer=settings.issuer,
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
        claims.session_id, token_id=claims.token_id, per_minute=per_minute, burst=burst
    )
    if decision.limit:
        request.state.rate_limit_headers = decision.headers()
    if decision.revocation is Revocation.REVOKED:
        raise InvalidToken("The session has been revoked.")
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
    """Brute-force guard for unauthenticated endpoints (token, signup), per client address.
    Its burst is a tenth of the per-minute rate: a flood is cut off after a handful."""
    settings = services.settings
    address = client_ip(request, settings.trusted_proxies)
    per_minute = settings.ip_rate_limit_per_minute
    decision = await services.limiter.check_key(
        f"ip:{address}", policy="ip", per_minute=per_minute, burst=max(1, per_minute // 10)
    )
    decision.raise_if_limited()


def login_account(tenant: uuid.UUID | str, email: str) -> str:
    """The guard's name for one account: the tenant (its id once known, else the slug given)
    and the normalised email, hashed so no address or email sits in Redis in clear."""
    return hashlib.sha256(f"{tenant}\x00{email.strip().lower()}".encode()).hexdigest()[:32]


async def limit_login(services: Services, *, account: str, address: str) -> None:
    """Password guesses against one account (sign-ins, and wrong current passwords on
    /me/password): a hard limit per (account, client address), and a much higher ceiling per
    account across all addresses. An attacker at one address exhausts only their own
    allowance, not the user's: locking the user out takes enough addresses to reach the
    ceiling (ten times the per-address limit by default), which also caps distributed
    guessing."""
    settings = services.settings
    place = hashlib.sha256(address.encode()).hexdigest()[:16]
    per_address = settings.login_rate_limit_per_minute
    decision = await services.limiter.check_key(
        f"login:{account}:{place}",
        policy="login",
        per_minute=per_address,
        burst=max(1, per_address // 2),
    )
    decision.raise_if_limited()
    ceiling = settings.login_account_rate_limit_per_minute
    decision = await services.limiter.check_key(
        f"login:{account}", policy="account", per_minute=ceiling, burst=max(1, ceiling // 4)
    )
    decision.raise_if_limited()
