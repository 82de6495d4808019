"""Usage events as the relay queues them, for the settlement and reconcile tests."""

from __future__ import annotations

import time
import uuid

from relay.metering import Usage
from relay.ports import UsageEvent


def usage_event(user_id: int, cost: int, *, token_id: int | None = None, request_id: str | None = None) -> UsageEvent:
    return UsageEvent(
        request_id=request_id or uuid.uuid4().hex,
        created_at=time.time(),
        user_id=user_id,
        token_id=token_id,
        endpoint="/v1/chat/completions",
        model="gpt-4o",
        upstream_model="gpt-4o",
        channel_id=None,
        key_id=None,
        usage=Usage(prompt_tokens=100, completion_tokens=20),
        cost=cost,
        group_multiplier="1",
        team_multiplier="1",
        attempts=1,
        status=200,
        latency_ms=40,
        stream=False,
    )
