"""Fixtures for the billing tests: usage rows and, in service mode, a clean Redis key space."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from billing.models import UsageLog, User
from tests.billing.events import settled_row


@pytest.fixture
def usage_row():
    """usage_row(user, at="2025-03-01T12:00:00+00:00", cost=..., **fields) → a UsageLog written through
    settlement (charged, rolled up and counted in budgets like the relay's)."""

    def make(user: User, *, at: str = "2025-03-01T12:00:00+00:00", **fields) -> UsageLog:
        return settled_row(user, at=at, **fields)

    return make


@pytest.fixture
def redis_client() -> Iterator:
    """Service mode: a Redis client on this test worker's key space, emptied before and after."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)

    def flush() -> None:
        for key in client.scan_iter(f"{settings.ONEPROXY_REDIS_PREFIX}*"):
            client.delete(key)

    flush()
    yield client
    flush()
