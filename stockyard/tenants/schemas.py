from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from stockyard.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from stockyard.core.schemas import NO_NUL, RequestBody

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


class TenantCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    slug: str = Field(pattern=SLUG_PATTERN)
    owner_email: EmailStr
    owner_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name: str
