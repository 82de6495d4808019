"""The gateway under test: the real ASGI app on uvicorn, on an ephemeral
port, in a background thread, against the test database (and Redis in
service mode)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import uvicorn
from django.conf import settings

T = TypeVar("T")

__all__ = [
    "Gateway",
    "anthropic_setup",
    "gateway",
    "gateway_with_loopback_images",
    "relay_process",
    "relay_setup",
    "spawn_relay",
    "wait_for",
]


def wait_for(predicate: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class Gateway:
    url: str
    relay: object
    server: uvicorn.Server
    loop: asyncio.AbstractEventLoop

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reload(self) -> None:
        """Make the relay see what the test just wrote to the database."""
        asyncio.run_coroutine_threadsafe(self.relay.reload(), self.loop).result(10)  # type: ignore[attr-defined]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the gateway's event loop (to look at the relay's state)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)


def _flush_redis() -> None:
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{settings.ONEPROXY_REDIS_PREFIX}*"):
        client.delete(key)


def _serve_gateway() -> Iterator[Gateway]:
    import os

    from oneproxy.asgi import build
    from oneproxy.relay_backend import DjangoBackend, relay_config
    from relay.app import Relay

    # Workers sharing a prefix would share keys and flush each other's.
    config = relay_config()
    assert config.redis_prefix == os.environ["ONEPROXY_REDIS_PREFIX"], "this test worker has no Redis prefix of its own"
    _flush_redis()
    relay = Relay(config, DjangoBackend())
    server = uvicorn.Server(
        uvicorn.Config(build(relay), host="127.0.0.1", port=0, lifespan="on", log_level="warning", loop="asyncio")
    )
    loops: list[asyncio.AbstractEventLoop] = []

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=serve, daemon=True, name="gateway")
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=20)
    assert server.started, "gateway failed to start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Gateway(url=f"http://127.0.0.1:{port}", relay=relay, server=server, loop=loops[0])
    server.should_exit = True
    thread.join(20)
    _flush_redis()


@pytest.fixture
def gateway(transactional_db) -> Iterator[Gateway]:
    yield from _serve_gateway()


@pytest.fixture
def gateway_with_loopback_images(transactional_db, settings) -> Iterator[Gateway]:
    """A gateway whose image fetching may reach 127.0.0.1 (the emulators'
    image server): ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS, which production
    leaves empty, so loopback and private addresses are refused."""
    import ipaddress

    settings.ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS = (ipaddress.ip_network("127.0.0.1/32"),)
    yield from _serve_gateway()


@pytest.fixture
def relay_setup(transactional_db, openai_emulator):
    """A user with $10, a relay token, and one OpenAI channel on the emulator."""
    from billing import services
    from billing.models import ModelPrice
    from billing.money import to_micro
    from channels_app.services import create_channel

    # Transactional tests flush the seeded rows; price the test models here.
    for model, inp, out in [
        ("gpt-4o-mini", "0.15", "0.60"),
        ("gpt-4o", "2.50", "10.00"),
        ("text-embedding-3-small", "0.02", "0"),
        ("*", "2.50", "10.00"),
    ]:
        ModelPrice.objects.update_or_create(model=model, channel_type="", defaults={"input": inp, "output": out})

    user, _ = services.create_user(username="alice")
    services.topup(user, to_micro("10"))
    token, key = services.create_token(user=user, name="app")
    channel = create_channel(
        name="emulator",
        type="openai",
        base_url=openai_emulator.base_url,
        models=["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
        keys=["sk-upstream-good"],
    )
    return {"user": user, "token": token, "key": key, "channel": channel, "emulator": openai_emulator}


# Anthropic's list prices (billing/migrations/0005 and 0010): input, output, cache read, cache write.
CLAUDE_PRICES = {
    "claude-sonnet-4-6": ("3", "15", "0.3", "3.75"),
    "claude-haiku-4-5": ("1", "5", "0.1", "1.25"),
}


@pytest.fixture
def anthropic_setup(relay_setup, anthropic_emulator):
    """relay_setup's user, token and OpenAI channel, plus an Anthropic channel
    on the Anthropic emulator serving the Claude models (priced as listed),
    with its default ``max_tokens`` at 1024."""
    from billing.models import ModelPrice
    from channels_app.services import create_channel

    for model, (inp, out, read, write) in CLAUDE_PRICES.items():
        ModelPrice.objects.update_or_create(
            model=model,
            channel_type="",
            defaults={"input": inp, "output": out, "cached_input": read, "cache_write": write},
        )
    channel = create_channel(
        name="claude",
        type="anthropic",
        base_url=anthropic_emulator.root_url,
        models=list(CLAUDE_PRICES),
        keys=["sk-ant-upstream-good"],
        config={"max_tokens": 1024},
    )
    return {**relay_setup, "anthropic": channel, "anthropic_emulator": anthropic_emulator}


def wait_for_key(url: str, key: str) -> None:
    """Until the relay at ``url`` serves ``key`` (a relay in another process
    sees a new token on its next snapshot poll)."""
    import requests

    def known() -> bool:
        answer = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        return answer.status_code == 200

    wait_for(known)


@dataclass
class RelayProcess:
    """A second relay as its own OS process, on the same test database and Redis."""

    url: str
    proc: object

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture
def spawn_relay(transactional_db):
    """spawn_relay() → a further relay as its own OS process (uvicorn), on the
    same test database, Redis and data dir (so the same encryption key)."""
    import os
    import socket
    import subprocess
    import sys

    import requests

    db = settings.DATABASES["default"]
    if "postgresql" in db["ENGINE"]:
        url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        url = f"sqlite:///{db['NAME']}"
    started: list[subprocess.Popen] = []

    def spawn() -> RelayProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": settings.REDIS_URL or "",
            "ONEPROXY_DATA_DIR": str(settings.DATA_DIR),
            "DJANGO_SETTINGS_MODULE": "oneproxy.settings",
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "oneproxy.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        started.append(proc)

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 401
            except requests.ConnectionError:
                return False

        wait_for(up, timeout=30, interval=0.2)
        return RelayProcess(url=f"http://127.0.0.1:{port}", proc=proc)

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        proc.wait(20)


@pytest.fixture
def relay_process(spawn_relay):
    return spawn_relay()
