"""The abuse suite: malformed and mistyped bodies on every endpoint, lying
Content-Length, oversized headers and clients that disconnect at every
stage. Every answer comes at once, is never a 5xx, and is in the documented
error shape; no hold outlives its request; no key changes state."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.faults.conftest import books_exact
from tests.faults.corpus import BAD_BODIES, JSON_ENDPOINTS, UPLOADS

pytestmark = pytest.mark.django_db(transaction=True)


def _error_shape(answer: requests.Response) -> None:
    error = answer.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert answer.headers["X-Request-Id"] in error["message"]


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS + UPLOADS)
def test_bad_bodies_on_every_endpoint_are_4xx_in_the_documented_shape(
    relay_setup: dict[str, Any], gateway: Any, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    from channels_app.models import KeyEvent

    headers = {"Authorization": f"Bearer {relay_setup['key']}", "Content-Type": "application/json"}
    if endpoint in UPLOADS:
        headers["Content-Type"] = "multipart/form-data; boundary=xyz"
    for body in BAD_BODIES:
        started = time.monotonic()
        answer = requests.post(f"{gateway.base_url}/{endpoint}", data=body, headers=headers, timeout=10)
        assert time.monotonic() - started < 5
        assert answer.status_code < 500, (body[:60], answer.status_code, answer.text[:300])
        if answer.status_code >= 400:
            _error_shape(answer)
    assert "unhandled error" not in caplog.text
    assert not KeyEvent.objects.exists()
    assert gateway.run(_held(gateway.relay)) == 0


def _raw(gateway: Any, data: bytes, *, read: bool = True, timeout: float = 5) -> bytes:
    where = urlparse(gateway.url)
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def _head(key: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n"
    ).encode()


@pytest.fixture
def short_body_timeout(settings: Any) -> None:
    settings.ONEPROXY_BODY_TIMEOUT_SECONDS = 1


def test_lying_content_length_and_oversized_headers(
    relay_setup: dict[str, Any], short_body_timeout: None, gateway: Any
) -> None:
    key = relay_setup["key"]
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    # promises more than it sends: a 408 after the body timeout, not a hang
    longer = _raw(gateway, _head(key, len(body) + 100) + body)
    assert longer.startswith(b"HTTP/1.1 408")
    # promises less than it sends: the body is cut, so it is not valid JSON
    shorter = _raw(gateway, _head(key, len(body) - 10) + body)
    assert shorter.startswith(b"HTTP/1.1 400") and b"invalid_json" in shorter
    # 100 KB of headers: refused by the server (plain text, documented in README), never a 5xx
    huge = _raw(gateway, _head(key, len(body), extra=f"X-Junk: {'a' * 100_000}\r\n") + body)
    assert not huge.startswith(b"HTTP/1.1 5") and huge.startswith(b"HTTP/1.1 ")
    assert len(relay_setup["emulator"].requests) <= 1  # only the one with huge headers, if the server took it


def test_clients_that_disconnect_at_every_stage_leave_no_hold(
    faulty_pool: dict[str, Any], gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = faulty_pool["key"]
    emulator = faulty_pool["emulator"]
    emulator.set_key_behaviour("sk-upstream-faulty", "slow", delay=0.5, chunk_delay=0.2)
    emulator.set_key_behaviour("sk-upstream-good", "slow", delay=0.5, chunk_delay=0.2)
    body = b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    # mid-body, while the upstream thinks, mid-stream
    _raw(gateway, _head(key, len(body)) + body[:20], read=False)
    _raw(gateway, _head(key, len(body)) + body, timeout=0.2)
    _raw(gateway, _head(key, len(body)) + body, timeout=0.9)
    deadline = time.monotonic() + 10
    while gateway.run(_held(gateway.relay)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.run(_held(gateway.relay)) == 0
    assert "unhandled error" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert books_exact(faulty_pool["user"].pk)


async def _held(relay: Any) -> int:
    ledger = relay.ledger
    if hasattr(ledger, "_held"):
        return int(sum(ledger._held.values()))
    return int(await ledger.redis.zcard(relay.redis_names.holds))
