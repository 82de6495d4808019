"""A client that promises a body and stalls gets a 408 and its connection
closed after the body timeout, and stalled bodies are bounded in number
(issue 13, defect 8), on the relay and on Django's paths alike."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_body_timeout(settings):
    settings.ONEPROXY_BODY_TIMEOUT_SECONDS = 1
    settings.ONEPROXY_MAX_RECEIVING = 4


def _stall(url: str, path: str, key: str) -> socket.socket:
    where = urlparse(url)
    sock = socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": '
    )
    sock.sendall(head.encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data + b"<still open>"
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/users/"])
def test_a_stalled_body_is_a_408_and_the_connection_closes(relay_setup, short_body_timeout, gateway, path):
    started = time.monotonic()
    answer = _answer(_stall(gateway.url, path, relay_setup["key"]))
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer and not answer.endswith(b"<still open>")
    assert time.monotonic() - started < 5
    assert relay_setup["emulator"].requests == []


def test_stalled_bodies_beyond_the_bound_are_refused_at_once(relay_setup, short_body_timeout, gateway):
    stalled = [_stall(gateway.url, "/v1/chat/completions", relay_setup["key"]) for _ in range(4)]
    time.sleep(0.2)
    extra = _stall(gateway.url, "/v1/chat/completions", relay_setup["key"])
    extra.settimeout(0.9)  # before the first ones time out
    answer = _answer(extra)
    assert answer.startswith(b"HTTP/1.1 503") and b"server_busy" in answer, answer[:300]
    for sock in stalled:
        assert _answer(sock).startswith(b"HTTP/1.1 408")
