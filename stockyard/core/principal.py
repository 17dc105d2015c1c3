"""Who is asking: the verified claims of an access token, as every layer sees them.

Nothing here imports anything of Stockyard's, so any package may depend on it: the token
mechanism (auth) produces it, the pipeline hands it to routes, and the audit trail records it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# The `role` claim of tokens that are not a tenant user's: an API client's (client
# credentials) and a platform support engineer's.
CLIENT_ROLE = "client"
STAFF_ROLE = "staff"


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
    def is_client(self) -> bool:
        return self.role == CLIENT_ROLE

    @property
    def is_staff(self) -> bool:
        return self.role == STAFF_ROLE
