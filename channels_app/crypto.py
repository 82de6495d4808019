"""Provider keys at rest: Fernet-encrypted with ONEPROXY_ENCRYPTION_KEY."""

from __future__ import annotations

import functools
import hashlib

from cryptography.fernet import Fernet
from django.conf import settings


@functools.cache
def _fernet(key: str) -> Fernet:
    return Fernet(key)


def encrypt(secret: str) -> str:
    return _fernet(settings.ONEPROXY_ENCRYPTION_KEY).encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet(settings.ONEPROXY_ENCRYPTION_KEY).decrypt(token.encode()).decode()


def fingerprint(secret: str) -> str:
    """Detects a key pasted twice into one channel without storing it in clear."""
    return hashlib.sha256(secret.encode()).hexdigest()


def mask(secret: str) -> str:
    """``sk-…WXYZ``: the provider prefix and last four characters only."""
    head = secret[:3] if len(secret) > 12 else ""
    return f"{head}…{secret[-4:]}" if len(secret) > 8 else "…"
