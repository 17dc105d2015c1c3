"""ES256 signing keys: generated, encrypted at rest, rotated, and cached per worker.

The private half of each key is stored encrypted with a Fernet key derived from
STOCKYARD_SECRET_KEY, so a database dump alone cannot mint tokens. Every worker keeps the key
set in memory and reloads it at most once per `signing_key_cache_seconds`, so a rotation is
picked up without a restart and an unknown `kid` can't turn into a database query per request.

Rotation is publish-before-sign: a new key is listed in JWKS (and known to every worker) for
at least the JWKS cache lifetime plus two key-cache periods before any worker signs with it,
so no verifier, ours or a client's cached JWKS, meets a token whose key it has not seen. The
key it replaces signs until then and verifies until its last token has expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, Request
from jwt.algorithms import ECAlgorithm
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.auth import repository as auth_repository
from stockyard.auth.models import SigningKey
from stockyard.core.principal import AccessClaims
from stockyard.core.sealing import sealer

log = structlog.get_logger()

# A rotated-out key keeps verifying this long past the access-token lifetime (clock skew).
RETIRE_MARGIN = timedelta(seconds=60)


def _fernet(secret_key: str) -> Fernet:
    return sealer(secret_key, "signing-keys")


@dataclass(frozen=True, slots=True)
class KeyPair:
    kid: str
    private_key: ec.EllipticCurvePrivateKey | None
    public_key: ec.EllipticCurvePublicKey
    created_at: datetime
    activates_at: datetime
    retires_at: datetime | None

    def verifies_at(self, moment: datetime) -> bool:
        return self.retires_at is None or self.retires_at > moment

    def public_jwk(self) -> dict[str, str]:
        jwk: dict[str, str] = ECAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}


def new_signing_key(secret_key: str) -> SigningKey:
    private_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(
        kid=f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(6)}",
        public_pem=public_pem.decode(),
        private_key_encrypted=_fernet(secret_key).encrypt(private_der),
    )


def publish_delay(*, jwks_max_age: float, key_cache_seconds: float) -> float:
    """How long a new key is published before it signs: every cached JWKS has expired and
    every worker has reloaded its key set (twice over, for the reload in flight) by then."""
    return jwks_max_age + 2 * key_cache_seconds


async def rotate(
    session: AsyncSession, *, secret_key: str, access_token_ttl: int, delay: float
) -> SigningKey:
    """Stage a new key that signs `delay` seconds from now (0: at once, which breaks verifiers
    holding a cached JWKS). The keys it replaces sign until then and verify for one token
    lifetime after. Concurrent rotations queue, so at most one key is ever the newest."""
    await auth_repository.lock_key_rotation(session)
    activates_at = datetime.now(UTC) + timedelta(seconds=delay)
    retires_at = activates_at + timedelta(seconds=access_token_ttl) + RETIRE_MARGIN
    await auth_repository.retire_current_keys(session, retires_at=retires_at)
    key = new_signing_key(secret_key)
    key.activates_at = activates_at
    await auth_repository.add(session, key)
    return key


async def ensure_current_key(
    session: AsyncSession, *, secret_key: str, access_token_ttl: int
) -> None:
    if await auth_repository.current_key_id(session) is None:
        await rotate(session, secret_key=secret_key, access_token_ttl=access_token_ttl, delay=0)


async def list_keys(session: AsyncSession) -> list[SigningKey]:
    return await auth_repository.list_signing_keys(session)


class VerifiedTokens:
    """Claims of access tokens this worker has already verified, by the token's SHA-256, kept
    until the token expires (bounded, least recently used out first). A client repeating its
    token skips the ES256 check; revocation and the limiter still run on every request, and a
    key retires only after every token it signed has expired, so nothing here outlives the
    key that vouched for it."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[bytes, AccessClaims] = OrderedDict()

    @staticmethod
    def _key(token: str, issuer: str, audience: str) -> bytes:
        return hashlib.sha256(f"{issuer}\x00{audience}\x00{token}".encode()).digest()

    def get(self, token: str, *, issuer: str, audience: str, leeway: int) -> AccessClaims | None:
        key = self._key(token, issuer, audience)
        claims = self._entries.get(key)
        if claims is None:
            return None
        if claims.expires_at + leeway <= time.time():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return claims

    def put(self, token: str, claims: AccessClaims, *, issuer: str, audience: str) -> None:
        self._entries[self._key(token, issuer, audience)] = claims
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class KeyRing:
    """The worker's view of the signing keys, reloaded lazily and never more than needed."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, secret_key: str, max_age: float
    ) -> None:
        self._sessionmaker = sessionmaker
        self._fernet = _fernet(secret_key)
        self._max_age = max_age
        self._keys: dict[str, KeyPair] = {}
        # Keys able to sign, newest activation first; the first already active signs.
        self._signers: list[KeyPair] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self.verified = VerifiedTokens()

    async def load(self) -> None:
        async with self._sessionmaker() as session, session.begin():
            rows = await list_keys(session)
        keys: dict[str, KeyPair] = {}
        now = datetime.now(UTC)
        for row in rows:
            public_key = serialization.load_pem_public_key(row.public_pem.encode())
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            private_key: ec.EllipticCurvePrivateKey | None = None
            # A replaced key may still sign until its successor activates.
            if row.retires_at is None or row.activates_at <= now < row.retires_at:
                loaded = serialization.load_der_private_key(
                    self._fernet.decrypt(row.private_key_encrypted), password=None
                )
                assert isinstance(loaded, ec.EllipticCurvePrivateKey)
                private_key = loaded
            keys[row.kid] = KeyPair(
                row.kid, private_key, public_key, row.created_at, row.activates_at, row.retires_at
            )
        self._keys = keys
        self._signers = sorted(
            (pair for pair in keys.values() if pair.private_key is not None),
            key=lambda pair: pair.activates_at,
            reverse=True,
        )
        self._loaded_at = time.monotonic()

    async def _reload_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at < self._max_age:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._max_age:
                await self.load()

    async def signing_key(self) -> KeyPair:
        """The newest key whose activation time has come (decided now, not at load time, so
        every worker switches at the same instant)."""
        await self._reload_if_stale()
        now = datetime.now(UTC)
        for pair in self._signers:
            if pair.activates_at <= now:
                return pair
        raise RuntimeError("no current signing key: run `stockyard migrate` or `keys rotate`")

    async def verification_key(self, kid: str) -> KeyPair | None:
        """The key for `kid`, reloading the set (throttled) when the kid is new to this worker."""
        key = self._keys.get(kid)
        if key is None:
            await self._reload_if_stale()
            key = self._keys.get(kid)
        if key is None or not key.verifies_at(datetime.now(UTC)):
            return None
        return key

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        await self._reload_if_stale()
        now = datetime.now(UTC)
        return {"keys": [k.public_jwk() for k in self._keys.values() if k.verifies_at(now)]}


async def get_keyring(request: Request) -> KeyRing:
    keyring: KeyRing = request.app.state.keyring
    return keyring


KeyRingDep = Annotated[KeyRing, Depends(get_keyring)]
