from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from stockyard.core.models import Base


class Tenant(Base):
    """A customer organisation. Its row is visible only inside its own tenant context."""

    __tablename__ = "tenant"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Marked deleted: no sign-in, no token; erased with all its rows after `erase_after`.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erase_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
