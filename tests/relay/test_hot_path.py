"""Design guards for the hot path: a request served from the snapshots makes
no database query of its own and no sync-to-async thread hop; its only
database work is settling its usage, in batches off the request path."""

from __future__ import annotations

import ast
import asyncio
import pathlib
import threading
from collections import Counter

import openai
import pytest
import uvicorn

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class CountingBackend:
    """The real backend, counting which of its methods run (the relay's only
    way to the database is this interface)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def test_cached_requests_touch_the_database_only_to_write_usage(relay_setup):
    from oneproxy.asgi import build
    from oneproxy.relay_backend import DjangoBackend, relay_config
    from relay.app import Relay

    # given: a relay on a counting backend, warmed up
    backend = CountingBackend(DjangoBackend())
    relay = Relay(relay_config(), backend)
    server = uvicorn.Server(
        uvicorn.Config(build(relay), host="127.0.0.1", port=0, lifespan="on", log_level="warning", loop="asyncio")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    port = server.servers[0].sockets[0].getsockname()[1]
    sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=relay_setup["key"], max_retries=0)
    try:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm"}])
        backend.calls.clear()
        # when
        for _ in range(20):
            sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        # then: usage settled in batches off the request path (embedded: from
        # the journal every 0.25 s; service mode: from the Redis stream),
        # config polls, nothing else
        wait_for(lambda: backend.calls["apply_usage"] >= 1)
        assert set(backend.calls) <= {"apply_usage", "config_version", "record_key_stats"}
        assert backend.calls["apply_usage"] < 20
    finally:
        server.should_exit = True
        thread.join(20)


def test_relay_never_hops_threads_per_request():
    """The relay uses no asgiref sync_to_async and runs nothing in a thread
    except through relay/db.py's one worker (snapshot loads, usage writes)."""
    for path in pathlib.Path("relay").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            n.attr if isinstance(n, ast.Attribute) else n.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute | ast.Name)
        }
        assert not names & {"sync_to_async", "to_thread"}, path
        if path.name != "db.py":
            assert "run_in_executor" not in names, path
