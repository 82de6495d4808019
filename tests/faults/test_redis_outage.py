"""A frozen or dead Redis stalls nothing: requests get a clean 503
``store_unavailable`` within about a second, the relay logs one line per
outage, and serves again once Redis is back (issue 13, defect 3)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.procs import OwnRedis, start_relay
from tests.gateway import wait_for_key

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def own_redis():
    redis = OwnRedis().start()
    yield redis
    redis.stop()


def _post(relay, key: str) -> tuple[int, float, dict]:
    started = time.monotonic()
    answer = requests.post(
        f"{relay.base_url}/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return answer.status_code, time.monotonic() - started, answer.json()


def test_frozen_then_dead_redis_answers_503_fast_and_logs_once(relay_setup, own_redis, tmp_path):
    relay = start_relay(tmp_path, redis_url=own_redis.url, env={"ONEPROXY_REDIS_TIMEOUT_MS": "500"})
    try:
        key = relay_setup["key"]
        wait_for_key(relay.url, key)
        assert _post(relay, key)[0] == 200
        # when: Redis freezes (SIGSTOP) under 20 concurrent requests
        own_redis.freeze()
        with ThreadPoolExecutor(max_workers=20) as pool:
            frozen = list(pool.map(lambda _: _post(relay, key), range(40)))
        own_redis.thaw()
        # then: every one answered quickly with the documented error
        assert {status for status, _, _ in frozen} == {503}
        assert max(elapsed for _, elapsed, _ in frozen) < 5
        assert {body["error"]["code"] for _, _, body in frozen} == {"store_unavailable"}
        # and it serves again once Redis answers
        deadline = time.monotonic() + 10
        while _post(relay, key)[0] != 200:
            assert time.monotonic() < deadline, "relay did not recover after Redis thawed"
            time.sleep(0.2)
        # when: Redis dies
        own_redis.kill()
        dead = [_post(relay, key) for _ in range(20)]
        assert {status for status, _, _ in dead} == {503}
        assert max(elapsed for _, elapsed, _ in dead) < 3
        # then: a log line per outage, not per request, and no traceback
        log = relay.log()
        assert log.count("Redis is not answering") <= 3, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert "internal_error" not in log
    finally:
        relay.stop()
