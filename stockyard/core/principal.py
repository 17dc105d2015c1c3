"""Who is asking: the verified claims of an access token, as every layer sees them.

Nothing here imports anything of Stockyard's, so any package may depend on it: the token
mechanism (auth) produces it, the pipeline hands it to routes, and the audit trail records it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

# The `role` claim of tokens that are not a tenant user's: an API client's (client
# credentials) and a platform support engineer's.
CLIENT_ROLE = "client"
STAFF_ROLE = "staff"


class PrincipalKind(StrEnum):
    """Who a token speaks for; also the `actor_type` of audit events."""

    USER = "user"
    CLIENT = "client"
    STAFF = "staff"
    # No token: the platform acting on its own (the webhook dispatcher disabling an endpoint).
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: uuid.UUID
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    scopes: frozenset[str]
    expires_at: int
    token_id: str

    @property
    def kind(self) -> PrincipalKind:
        if self.role == STAFF_ROLE:
            return PrincipalKind.STAFF
        return PrincipalKind.CLIENT if self.role == CLIENT_ROLE else PrincipalKind.USER

    @property
    def is_client(self) -> bool:
        return self.kind is PrincipalKind.CLIENT

    @property
    def is_staff(self) -> bool:
        return self.kind is PrincipalKind.STAFF
