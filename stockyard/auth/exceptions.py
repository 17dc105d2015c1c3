"""OAuth2 errors (RFC 6749 section 5.2) as envelope codes, and the auth domain's own."""

from __future__ import annotations

from stockyard.core.errors import AppError, Conflict, ErrorDetails, Forbidden


class OAuthError(AppError):
    status_code = 400


class InvalidRequest(OAuthError):
    code = "invalid_request"
    message = "The token request is missing a parameter or is malformed."


class InvalidGrant(OAuthError):
    code = "invalid_grant"
    message = "The credentials or refresh token are invalid, expired or revoked."


class RefreshTokenReused(InvalidGrant):
    """A used refresh token came back: its family has been revoked (in a transaction of its
    own, so the revocation stands although the request fails)."""


class InvalidClient(OAuthError):
    status_code = 401
    code = "invalid_client"
    message = "Client authentication failed."

    def __init__(self, message: str | None = None, *, details: ErrorDetails = None) -> None:
        super().__init__(message, details=details, headers={"WWW-Authenticate": "Basic"})


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    message = "This grant type is not supported."


class InvalidScope(OAuthError):
    code = "invalid_scope"
    message = "The requested scope is invalid or exceeds what was granted."


class WrongPassword(AppError):
    status_code = 400
    code = "invalid_password"
    message = "The current password is wrong."


class PasswordChangedMeanwhile(Conflict):
    code = "password_changed"
    message = "The password was changed by another request meanwhile; nothing was changed."


class LastOwner(Conflict):
    code = "last_owner"
    message = "A tenant must keep at least one active owner."


class RoleNotAllowed(Forbidden):
    message = "Your role may not grant or change this role."


class EmailTaken(Conflict):
    message = "A user with this email already exists."


class SignupDisabled(Forbidden):
    code = "signup_disabled"
    message = "Self-service signup is disabled on this deployment."
