"""The audit chain's HMAC key, read from a file outside the database or the environment."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings


def _setting(name: str) -> str | None:
    value = getattr(settings, name, None) or os.environ.get(name)
    return str(value) if value else None


def audit_hmac_key() -> bytes | None:
    """The chain key, from a file outside the database (preferred) or the environment."""
    path = _setting("AUDIT_HMAC_KEY_FILE")
    if path:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"AUDIT_HMAC_KEY_FILE {path} is empty")
        return key
    key_text = _setting("AUDIT_HMAC_KEY")
    return key_text.encode() if key_text else None
