"""Access tokens: short-lived ES256 JWTs, verified strictly.

Verification pins the algorithm, requires every claim, checks iss/aud/exp/nbf with a small
leeway and finds the key by `kid` in the worker's key ring; anything else is a 401.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import jwt

from stockyard.core.errors import InvalidToken
from stockyard.core.principal import AccessClaims

if TYPE_CHECKING:  # keys -> repository -> tokens: only the annotation is needed here
    from stockyard.auth.keys import KeyRing

ALGORITHM = "ES256"
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = [
    "iss",
    "aud",
    "sub",
    "client_id",
    "tid",
    "sid",
    "role",
    "scope",
    "iat",
    "nbf",
    "exp",
    "jti",
]
# RFC 9068: access tokens say what they are, so one can't pass for another kind of JWT.
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT "typ" value, not a secret
# The `client_id` of tokens from the password grant: Stockyard's own first-party sign-in.
FIRST_PARTY_CLIENT_ID = "stockyard"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


async def issue_access_token(
    keyring: KeyRing,
    *,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    subject: uuid.UUID,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    role: str,
    scopes: frozenset[str],
    client_id: str,
) -> IssuedToken:
    key = await keyring.signing_key()
    assert key.private_key is not None, "the current key always carries its private half"
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": str(subject),
        "client_id": client_id,
        "tid": str(tenant_id),
        "sid": str(session_id),
        "role": role,
        "scope": " ".join(sorted(scopes)),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm=ALGORITHM,
        headers={"kid": key.kid, "typ": TOKEN_TYPE},
    )
    return IssuedToken(token=token, expires_in=ttl_seconds)


async def verify_access_token(
    keyring: KeyRing, token: str, *, issuer: str, audience: str
) -> AccessClaims:
    known = keyring.verified.get(token, issuer=issuer, audience=audience, leeway=LEEWAY_SECONDS)
    if known is not None:
        return known
    claims = await _verify(keyring, token, issuer=issuer, audience=audience)
    keyring.verified.put(token, claims, issuer=issuer, audience=audience)
    return claims


async def _verify(keyring: KeyRing, token: str, *, issuer: str, audience: str) -> AccessClaims:
    invalid = InvalidToken()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise invalid from None
    kid = header.get("kid")
    typ = str(header.get("typ", "")).lower().removeprefix("application/")
    if (
        header.get("alg") != ALGORITHM
        or typ != TOKEN_TYPE
        or not isinstance(kid, str)
        or len(kid) > 64
    ):
        raise invalid
    key = await keyring.verification_key(kid)
    if key is None:
        raise invalid
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
        return AccessClaims(
            subject=uuid.UUID(claims["sub"]),
            tenant_id=uuid.UUID(claims["tid"]),
            session_id=uuid.UUID(claims["sid"]),
            role=str(claims["role"]),
            scopes=frozenset(str(claims["scope"]).split()),
            expires_at=int(claims["exp"]),
            token_id=str(claims["jti"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise invalid from None


def new_refresh_token(tenant_id: uuid.UUID) -> tuple[str, bytes]:
    """An opaque refresh token and its SHA-256. The tenant id prefix routes the look-up into
    the right tenant context; the 256 random bits after it are the secret."""
    token = f"{tenant_id.hex}.{secrets.token_urlsafe(32)}"
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def tenant_of_refresh_token(token: str) -> uuid.UUID | None:
    prefix, _, secret = token.partition(".")
    if not secret or len(token) > 200:
        return None
    try:
        return uuid.UUID(hex=prefix)
    except ValueError:
        return None
