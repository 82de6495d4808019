"""Fixtures for the billing tests: usage rows and, in service mode, a clean Redis key space."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from django.conf import settings

from billing.models import UsageLog, User


@pytest.fixture
def usage_row():
    """usage_row(user, at="2025-03-01T12:00:00+00:00", cost=..., **fields) → a saved UsageLog."""

    def make(user: User, *, at: str = "2025-03-01T12:00:00+00:00", **fields) -> UsageLog:
        return UsageLog.objects.create(
            request_id=fields.pop("request_id", uuid.uuid4().hex),
            created_at=datetime.fromisoformat(at),
            user=user,
            endpoint="/v1/chat/completions",
            model=fields.pop("model", "gpt-4o"),
            status=fields.pop("status", 200),
            **fields,
        )

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
