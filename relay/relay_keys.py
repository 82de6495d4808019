"""Relay keys, the ``sk-`` keys clients send: their format (``sk-`` + 48
characters [A-Za-z0-9]), SHA-256 storage, display prefix and channel pin.

Upstream providers' keys are another thing: relay/keystate.py,
relay/keypool.py and relay/keybus.py.
"""

from __future__ import annotations

import hashlib
import secrets
import string

KEY_PREFIX = "sk-"
KEY_BODY_LENGTH = 48
_ALPHABET = string.ascii_letters + string.digits


def new_relay_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_BODY_LENGTH))


def new_access_token() -> str:
    """A management access token: distinct prefix so it is never mistaken for a relay key."""
    return "op-" + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """What lists show: enough to tell keys apart, never enough to use one."""
    return key[:7] + "…" + key[-4:]


def split_pinned(key: str) -> tuple[str, int | None]:
    """``sk-KEY-CHANNELID`` pins a channel; split from the right."""
    body, sep, tail = key.rpartition("-")
    if sep and body.startswith(KEY_PREFIX) and len(body) > len(KEY_PREFIX) and tail.isdigit():
        return body, int(tail)
    return key, None
