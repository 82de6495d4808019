"""A real `celery worker` process runs a probe sent through the broker and
changes a key's state in the database: Redis in service mode, the filesystem
broker (no server) in embedded mode.

Each test has its own queue, so workers of concurrent test runs on the same
Redis or data folder never take each other's messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from channels_app import services, tasks
from channels_app.models import ChannelKey, KeyEvent
from tests.gateway import wait_for


@dataclass
class Worker:
    queue: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _database_url() -> str:
    """The test database, as the worker process must reach it."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"  # a file: pytest-django's test database
    auth = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def worker(transactional_db, tmp_path) -> Iterator[Worker]:
    queue = f"oneproxy-test-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL or "",
        # The same data folder: the same encryption key, and in embedded mode the same broker folders.
        "ONEPROXY_DATA_DIR": str(settings.DATA_DIR),
        "DJANGO_SETTINGS_MODULE": "oneproxy.settings",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "oneproxy", "worker"),
                *("--queues", queue, "--hostname", f"{queue}@%h", "--loglevel", "INFO"),
                *("--concurrency", "1", "--prefetch-multiplier", "1"),
                # Nothing to learn from other workers; starts faster.
                *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            ],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the pool child goes with it
        )
    try:
        yield Worker(queue=queue, proc=proc, log=log)
    finally:
        # A warm shutdown on the filesystem broker takes seconds (its consumer
        # polls); the task is done, so stop the worker and its pool child now.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        _forget_queue(queue)


def _forget_queue(queue: str) -> None:
    """Drop the broker's record of this test's queue (its binding)."""
    if settings.REDIS_URL:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).delete(f"_kombu.binding.{queue}", queue)
    else:
        control = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["control_folder"])
        (control / f"{queue}.exchange").unlink(missing_ok=True)


def _a_probe_sent_to_the_worker_disables_a_revoked_key(worker: Worker, openai_emulator) -> None:
    # given a channel whose key the upstream refuses, committed for the worker to see
    revoked = "sk-upstream-revoked-000000021"
    channel = services.create_channel(
        name="worker-probed",
        type="openai",
        base_url=openai_emulator.base_url,
        models=["gpt-4o-mini"],
        keys=["sk-upstream-good", revoked],
    )
    key = next(k for k in channel.keys.all() if k.reveal() == revoked)
    # when the probe goes through the broker
    tasks.probe_keys.apply_async(kwargs={"channel_id": channel.pk}, queue=worker.queue)

    # then the worker process probes the upstream and writes the new state
    def disabled() -> bool:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.output()}"
        return ChannelKey.objects.get(pk=key.pk).state == "auto_disabled"

    try:
        wait_for(disabled, timeout=60, interval=0.2)
    except AssertionError:
        raise AssertionError(f"the worker did not disable the key:\n{worker.output()}") from None
    assert KeyEvent.objects.get(key=key).source == "probe"
    assert {r["key"] for r in openai_emulator.requests} == {"sk-upstream-good", revoked}
    wait_for(lambda: "channels_app.probe_keys" in worker.output() and "succeeded" in worker.output(), timeout=10)
    assert revoked not in worker.output()


@pytest.mark.service
def test_a_worker_on_redis_runs_a_probe_that_disables_a_key(worker, openai_emulator):
    _a_probe_sent_to_the_worker_disables_a_revoked_key(worker, openai_emulator)


@pytest.mark.embedded
def test_a_worker_on_the_filesystem_broker_runs_a_probe_that_disables_a_key(worker, openai_emulator):
    assert settings.CELERY_BROKER_URL.startswith("filesystem://")
    _a_probe_sent_to_the_worker_disables_a_revoked_key(worker, openai_emulator)
