from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from stockyard.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from stockyard.auth.scopes import ClientScope, Role
from stockyard.core.pagination import Page
from stockyard.core.schemas import NO_NUL, JsonBool, RequestBody


class OAuthErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    INVALID_SCOPE = "invalid_scope"
    UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"  # noqa: S105 - an error code


class OAuthErrorResponse(BaseModel):
    """RFC 6749 section 5.2: the error shape OAuth clients parse, on the token and revocation
    endpoints only (everything else answers the project's error envelope)."""

    error: OAuthErrorCode
    error_description: str
    request_id: str | None


class AuthorizationServerMetadata(BaseModel):
    """RFC 8414: what an OAuth client library needs to find and use the endpoints."""

    issuer: str
    token_endpoint: str
    revocation_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
    response_types_supported: list[str]


class RevocationResult(BaseModel):
    status: Literal["ok"] = "ok"


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    scope: str


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: Role
    is_active: bool
    version: int


class MeUser(BaseModel):
    id: uuid.UUID
    email: str
    role: Role


class MeClient(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]


class MeTenant(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class MeRead(BaseModel):
    user: MeUser | None
    client: MeClient | None = None
    tenant: MeTenant


Password = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class PasswordChange(RequestBody):
    current_password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Password


class UserCreate(RequestBody):
    email: EmailStr
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    role: Role
    password: str = Password


class UserUpdate(RequestBody):
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    role: Role | None = None
    is_active: JsonBool | None = None


class UserPage(Page[UserRead]):
    pass


class JWKSet(BaseModel):
    keys: list[dict[str, str]]


class ClientCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    scopes: list[ClientScope] = Field(min_length=1, max_length=2)


class ClientRead(BaseModel):
    client_id: uuid.UUID
    name: str
    scopes: list[str]
    created_at: datetime


class ClientCreated(ClientRead):
    client_secret: str = Field(description="Shown once; store it now.")


class ClientPage(Page[ClientRead]):
    pass


SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


class TenantCreate(RequestBody):
    """Signup: a new tenant and its first owner."""

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    slug: str = Field(pattern=SLUG_PATTERN)
    owner_email: EmailStr
    owner_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
