"""Secrets kept at rest, encrypted with keys derived from STOCKYARD_SECRET_KEY.

One derived key per purpose, so a value sealed for one purpose can never be opened as another.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet


def sealer(secret_key: str, purpose: str) -> Fernet:
    derived = hashlib.sha256(f"stockyard-{purpose}:".encode() + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))
