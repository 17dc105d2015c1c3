"""Schemathesis hooks for the fuzz run (named in schemathesis.toml)."""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    """A fresh Idempotency-Key for every request, as a real client sends: Hypothesis reuses
    short generated values, and reusing a key with a different body is answered 422 on
    purpose (it is how a client learns it sent two requests under one key)."""
    del ctx, kwargs
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = uuid.uuid4().hex
