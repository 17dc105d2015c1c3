"""Token endpoint (RFC 6749), revocation (RFC 7009), JWKS and the caller's own account."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response

from stockyard.auth import grants
from stockyard.auth import repository as auth_repository
from stockyard.auth.exceptions import (
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    UnsupportedGrantType,
)
from stockyard.auth.guard import client_ip, limit_by_ip
from stockyard.auth.keys import KeyRingDep
from stockyard.auth.limiter import LimiterDep
from stockyard.auth.pipeline import CurrentPrincipal, TenantSession, UnscopedSession
from stockyard.auth.schemas import (
    AuthorizationServerMetadata,
    JWKSet,
    MeClient,
    MeRead,
    MeTenant,
    MeUser,
    OAuthErrorResponse,
    RevocationResult,
    TokenResponse,
)
from stockyard.auth.scopes import Role, Scope
from stockyard.core.dependencies import SessionmakerDep, SettingsDep
from stockyard.core.errors import NotFound
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.tenants import repository as tenant_repository

router = APIRouter(prefix="/api/v1", tags=["auth"])
well_known = APIRouter(tags=["auth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The OAuth endpoints answer their own errors in RFC 6749's shape; limits and outages keep
# the envelope.
OAUTH_ENDPOINTS = frozenset({"/api/v1/auth/token", "/api/v1/auth/revoke"})
OAUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthErrorResponse, "description": "OAuth error (RFC 6749 section 5.2)"},
    401: {
        "model": OAuthErrorResponse,
        "description": "invalid_client, with WWW-Authenticate: Basic",
    },
    **error_responses(413, 429, 503),
}
# The token and revocation endpoints take a few short text fields: a multipart file part is
# refused before it is spooled anywhere, and the whole form is small.
TOKEN_FORM_BODY_BYTES = 64 * 1024
TOKEN_FIELDS = frozenset(
    {
        "grant_type",
        "username",
        "password",
        "tenant",
        "refresh_token",
        "client_id",
        "client_secret",
        "scope",
    }
)
REVOCATION_FIELDS = frozenset({"token", "token_type_hint"})


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        client_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient() from None
    if not sep:
        raise InvalidClient()
    return client_id, secret


async def _refuse_repeated_parameters(request: Request, known: frozenset[str]) -> None:
    """RFC 6749 section 3.2: request parameters must not be included more than once. Unknown
    parameters are ignored, repeated or not (section 3.1)."""
    counts = Counter(name for name, _ in (await request.form()).multi_items() if name in known)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InvalidRequest(
            f"Repeated form field: {', '.join(repeated)}.", details={"repeated": repeated}
        )


def _requested_scopes(scope: str | None) -> frozenset[str] | None:
    """The scopes asked for (RFC 6749 section 3.3: space-delimited), or None when none were.
    A scope Stockyard does not know is `invalid_scope` at once."""
    if scope is None or not scope.strip():
        return None
    requested = frozenset(scope.split())
    unknown = sorted(requested - {member.value for member in Scope})
    if unknown:
        raise InvalidScope(f"Unknown scope: {' '.join(unknown)}.")
    return requested


def _required(**fields: str | None) -> dict[str, str]:
    missing = sorted(name for name, value in fields.items() if not value)
    if missing:
        raise InvalidRequest(
            f"Missing form field: {', '.join(missing)}.", details={"missing": missing}
        )
    return {name: value for name, value in fields.items() if value}


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    dependencies=[Depends(limit_by_ip)],
    summary="Exchange credentials or a refresh token for tokens",
    max_body_size=TOKEN_FORM_BODY_BYTES,
    form_limits={"max_files": 0, "max_fields": 16, "max_part_size": 8192},
    responses=OAUTH_RESPONSES,
)
async def issue_token(
    request: Request,
    response: Response,
    session: UnscopedSession,
    settings: SettingsDep,
    sessionmaker: SessionmakerDep,
    keyring: KeyRingDep,
    limiter: LimiterDep,
    grant_type: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="Required: `password`, `refresh_token` or `client_credentials`.",
        ),
    ] = None,
    username: Annotated[
        str | None, Form(max_length=4096, description="password grant: the email. Required.")
    ] = None,
    password: Annotated[
        str | None, Form(max_length=4096, description="password grant: required.")
    ] = None,
    tenant: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="password grant: the tenant's slug (omit it for platform staff).",
        ),
    ] = None,
    refresh_token: Annotated[
        str | None, Form(max_length=4096, description="refresh_token grant: required.")
    ] = None,
    client_id: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="client_credentials grant, when not sent as HTTP Basic credentials.",
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="client_credentials grant, when not sent as HTTP Basic credentials.",
        ),
    ] = None,
    scope: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="Optional, space-separated: a subset of what the account or client "
            "may have (a refresh may narrow the sign-in's scope, never widen it).",
        ),
    ] = None,
) -> TokenResponse:
    """Exchange credentials for tokens (RFC 6749), form-encoded. Each grant needs:

    - `password`: `username` (the email), `password` and `tenant` (the slug; platform staff
      omit it). Returns an access token and a refresh token.
    - `refresh_token`: `refresh_token`. The presented token is used up; a new pair comes back.
    - `client_credentials`: the API client's id and secret, as HTTP Basic credentials
      (preferred) or `client_id` / `client_secret` fields. Returns an access token only.

    Any grant may ask for `scope`. Errors are RFC 6749 section 5.2 objects.
    """
    response.headers.update(NO_STORE)
    await _refuse_repeated_parameters(request, TOKEN_FIELDS)
    requested = _requested_scopes(scope)
    address = client_ip(request, settings.trusted_proxies)
    if grant_type == "password" and not tenant:
        # No tenant: a platform support engineer signing in.
        fields = _required(username=username, password=password)
        pair = await grants.staff_password_grant(
            sessionmaker,
            settings,
            keyring,
            limiter,
            email=fields["username"],
            password=fields["password"],
            address=address,
            scope=requested,
        )
    elif grant_type == "password":
        fields = _required(username=username, password=password, tenant=tenant)
        # The sign-in opens its own short transactions (no connection while it hashes);
        # `session` below serves the other grants and is never connected on this path.
        pair = await grants.password_grant(
            sessionmaker,
            settings,
            keyring,
            limiter,
            tenant_slug=fields["tenant"],
            email=fields["username"],
            password=fields["password"],
            address=address,
            scope=requested,
        )
    elif grant_type == "refresh_token":
        fields = _required(refresh_token=refresh_token)
        pair = await grants.refresh_grant(
            session,
            sessionmaker,
            settings,
            keyring,
            limiter,
            refresh_token=fields["refresh_token"],
            scope=requested,
        )
    elif grant_type == "client_credentials":
        basic = _basic_credentials(request)
        if basic is not None:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise InvalidClient()
        pair = await grants.client_credentials_grant(
            session,
            settings,
            keyring,
            client_id=client_id,
            client_secret=client_secret,
            scope=requested,
        )
    elif grant_type is None:
        raise InvalidRequest("Missing form field: grant_type.", details={"missing": ["grant_type"]})
    else:
        raise UnsupportedGrantType()
    return TokenResponse(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        scope=pair.scope,
    )


@router.post(
    "/auth/revoke",
    dependencies=[Depends(limit_by_ip)],
    summary="Revoke a refresh token (its whole session) or one access token (RFC 7009)",
    response_model=RevocationResult,
    max_body_size=TOKEN_FORM_BODY_BYTES,
    form_limits={"max_files": 0, "max_fields": 16, "max_part_size": 8192},
    responses=OAUTH_RESPONSES,
)
async def revoke_token(
    request: Request,
    session: UnscopedSession,
    settings: SettingsDep,
    keyring: KeyRingDep,
    limiter: LimiterDep,
    token: Annotated[
        str,
        Form(min_length=1, max_length=4096, description="The refresh or access token to revoke."),
    ],
    token_type_hint: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="Optional, and ignored: `refresh_token` or `access_token`; the token's "
            "own shape says what it is, and RFC 7009 section 2.1 has unknown hints ignored.",
        ),
    ] = None,
) -> RevocationResult:
    await _refuse_repeated_parameters(request, REVOCATION_FIELDS)
    del token_type_hint  # RFC 7009: a hint only; the token's shape says what it is
    await grants.revoke_token(session, settings, keyring, limiter, token=token)
    return RevocationResult()


@router.get(
    "/me",
    response_model=MeRead,
    summary="Who the token belongs to",
    responses=error_responses(*AUTHENTICATED, 404),
)
async def read_me(session: TenantSession, principal: CurrentPrincipal) -> MeRead:
    tenant = await tenant_repository.get_tenant(session, principal.tenant_id)
    if tenant is None:
        raise NotFound()
    me_tenant = MeTenant(id=tenant.id, slug=tenant.slug, name=tenant.name)
    if principal.is_client:
        client = await auth_repository.get_client(session, principal.subject)
        if client is None:
            raise NotFound()
        return MeRead(
            user=None,
            client=MeClient(id=client.id, name=client.name, scopes=sorted(client.scopes)),
            tenant=me_tenant,
        )
    user = await auth_repository.get_user(session, principal.subject)
    if user is None:
        raise NotFound()
    return MeRead(user=MeUser(id=user.id, email=user.email, role=Role(user.role)), tenant=me_tenant)


@well_known.get(
    "/.well-known/oauth-authorization-server",
    response_model=AuthorizationServerMetadata,
    summary="OAuth 2.0 authorization server metadata (RFC 8414)",
)
async def read_authorization_server_metadata(
    response: Response, settings: SettingsDep
) -> AuthorizationServerMetadata:
    base = settings.public_url
    response.headers["Cache-Control"] = "public, max-age=3600"
    return AuthorizationServerMetadata(
        issuer=settings.issuer,
        token_endpoint=f"{base}/api/v1/auth/token",
        revocation_endpoint=f"{base}/api/v1/auth/revoke",
        jwks_uri=f"{base}/.well-known/jwks.json",
        grant_types_supported=["password", "refresh_token", "client_credentials"],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post", "none"],
        revocation_endpoint_auth_methods_supported=["none"],
        scopes_supported=[scope.value for scope in Scope],
        # No authorization endpoint: no browser redirect flows.
        response_types_supported=[],
    )


@well_known.get("/.well-known/jwks.json", response_model=JWKSet, summary="Public signing keys")
async def read_jwks(response: Response, settings: SettingsDep, keyring: KeyRingDep) -> JWKSet:
    # A rotated key is published at least this long before it signs (publish-before-sign).
    response.headers["Cache-Control"] = f"public, max-age={settings.jwks_max_age_seconds}"
    return JWKSet.model_validate(await keyring.jwks())
