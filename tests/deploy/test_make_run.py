"""Deployment smoke test: `make run` on a fresh copy of the repository, in
service mode (a new PostgreSQL database and a Redis server of its own) and in
embedded mode (a new data folder), checked from outside as an operator would:

- /readyz answers ok and the admin's stylesheet is served, hashed and cached;
- a relay request to the OpenAI emulator is served and billed (a usage row,
  and the balance moved by its cost), set up through the management API
  with the token that `make run` printed;
- `celery -A oneproxy call channels_app.probe_keys` is run by the worker;
- the web server, the worker and beat are all still alive 20 s after start;
- SIGINT to the foreground process group (Ctrl-C) stops every process
  within 15 s.

The venv is the one `make run` builds in the copy from requirements.txt
alone: a runtime module that only the dev requirements bring would fail here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.harness import Response, check_styled_admin, free_port, group_processes, http, user_env, wait_for

READY_TIMEOUT = 240.0  # the first start builds the venv
ALIVE_FOR = 20.0
STOP_WITHIN = 15.0


@dataclass
class Deployment:
    """`make run` started in its own process group, as a terminal starts it."""

    clone: Path
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen = field(init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["make", "run"],
                cwd=self.clone,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
        answer = http(method, self.url + path, body, headers)
        if answer.status == 0:
            state = "is running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
            raise AssertionError(self.failure(f"{method} {path}: no answer; make run {state}"))
        return answer

    def failure(self, message: str) -> str:
        return f"{message}\n--- last lines of {self.log} ---\n" + "\n".join(self.output().splitlines()[-60:])

    def wait_ready(self) -> dict:
        def ready() -> dict | None:
            assert self.proc.poll() is None, self.failure(f"make run exited with {self.proc.returncode}")
            answer = http("GET", f"{self.url}/readyz")  # no answer yet while it starts
            return answer.json() if answer.status == 200 else None

        return wait_for(ready, READY_TIMEOUT, "/readyz ok", interval=0.5)

    def roles(self) -> dict[str, int]:
        """Which of make, serve, web, worker and beat are alive (count of processes)."""
        counts = dict.fromkeys(("make", "serve", "web", "worker", "beat"), 0)
        for cmdline in group_processes(self.proc.pid).values():
            if cmdline.startswith("make"):
                counts["make"] += 1
            elif "manage.py serve" in cmdline:
                counts["serve"] += 1
            elif "uvicorn oneproxy.asgi:application" in cmdline:
                counts["web"] += 1
            elif " worker " in cmdline and "celery" in cmdline:
                counts["worker"] += 1
            elif " beat " in cmdline and "celery" in cmdline:
                counts["beat"] += 1
        return counts

    def management_token(self) -> str:
        match = re.search(r"management access token \(shown once\): (\S+)", self.output())
        assert match, self.failure("make run printed no management access token")
        return match.group(1)

    def celery_call(self, task: str) -> str:
        called = subprocess.run(
            [".venv/bin/celery", "-A", "oneproxy", "call", task],
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert called.returncode == 0, called.stderr
        return called.stdout.strip().splitlines()[-1]

    def interrupt(self) -> float:
        """Ctrl-C: SIGINT to the whole group; seconds until none of it is left."""
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            wait_for(lambda: not group_processes(self.proc.pid), STOP_WITHIN, "every process stopped", 0.1)
        finally:
            self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


@pytest.fixture
def deploy(fresh_clone, artifacts, request) -> Iterator[Callable[..., Deployment]]:
    started: list[Deployment] = []

    def start(mode: str, **env: str) -> Deployment:
        port = free_port()
        data = fresh_clone.parent / f"data-{mode}"
        d = Deployment(
            clone=fresh_clone,
            env=user_env(PORT=str(port), ONEPROXY_DATA_DIR=str(data), **env),
            log=artifacts / f"make-run-{mode}.log",
            port=port,
        )
        started.append(d)
        return d

    yield start
    for d in started:
        if hasattr(d, "proc"):
            d.kill()


def check_relay_request_is_billed(d: Deployment, upstream, token: str) -> None:
    api = {"Authorization": f"Bearer {token}"}
    channel = d.request(
        "POST",
        "/api/channels/",
        {
            "name": "emulator",
            "type": "openai",
            "base_url": upstream.base_url,
            "models": ["gpt-4o-mini"],
            "keys": ["sk-upstream-good"],
        },
        api,
    )
    assert channel.status == 201, channel.body
    user = d.request("POST", "/api/users/", {"username": "smoke"}, api)
    assert user.status == 201, user.body
    user_id = user.json()["id"]
    topup = d.request("POST", f"/api/users/{user_id}/topup/", {"amount_usd": "5.00", "note": "smoke"}, api)
    assert topup.status == 200, topup.body
    created = d.request("POST", "/api/tokens/", {"name": "smoke", "user": user_id}, api)
    assert created.status == 201, created.body
    relay_key = created.json()["key"]

    def relayed() -> Response | None:
        # 401 until the relay's snapshot has the new token, 404 model_not_found
        # until it has the new channel: it polls for changes.
        answer = d.request(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi from the smoke test"}]},
            {"Authorization": f"Bearer {relay_key}"},
        )
        assert answer.status in (200, 401, 404), answer.body
        return answer if answer.status == 200 else None

    asked = time.monotonic()
    answer = wait_for(relayed, 30, "relay request served")
    print(f"relay served the new token and channel {time.monotonic() - asked:.1f} s after they were created")
    assert answer.json()["choices"][0]["message"]["content"].startswith("Hello from the OpenAI emulator")

    def usage() -> list:
        return d.request("GET", f"/api/usage/?user={user_id}", headers=api).json()["results"]

    rows = wait_for(usage, 15, "usage row")
    assert len(rows) == 1 and rows[0]["model"] == "gpt-4o-mini" and rows[0]["status"] == 200, rows
    cost = Decimal(rows[0]["cost_usd"])
    assert cost > 0
    balance = Decimal(d.request("GET", f"/api/users/{user_id}/", headers=api).json()["balance_usd"])
    assert balance == Decimal("5.00") - cost, (balance, cost)


def check_worker_runs_a_call(d: Deployment, upstream) -> None:
    before = len(upstream.requests)
    task_id = d.celery_call("channels_app.probe_keys")
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), task_id
    wait_for(
        lambda: re.search(rf"Task channels_app\.probe_keys\[{task_id}\] succeeded", d.output()),
        30,
        d.failure(f"the worker running probe_keys {task_id}"),
    )
    # Its effect: the probe's 1-token chat reached the upstream.
    probes = [r for r in upstream.requests[before:] if (r["json"] or {}).get("max_tokens") == 1]
    assert probes, upstream.requests[before:]


def run_smoke(d: Deployment, upstream, service: bool) -> None:
    d.start()
    ready = d.wait_ready()
    started = time.monotonic()
    assert ready == {"status": "ok", "checks": {"database": "ok", **({"redis": "ok"} if service else {})}}
    assert f"({'service' if service else 'embedded'} mode)" in d.output()
    check_styled_admin(d.url, d.failure)
    check_relay_request_is_billed(d, upstream, d.management_token())
    check_worker_runs_a_call(d, upstream)

    time.sleep(max(0.0, ALIVE_FOR - (time.monotonic() - started)))
    roles = d.roles()
    assert all(roles.values()), d.failure(f"not every process is alive after {ALIVE_FOR:.0f} s: {roles}")
    assert " exited with " not in d.output(), d.failure("a process exited")

    took = d.interrupt()
    assert took < STOP_WITHIN
    print(f"stopped in {took:.1f} s after SIGINT")


def test_service_mode(deploy, fresh_postgres, own_redis, upstream) -> None:
    d = deploy("service", DATABASE_URL=fresh_postgres, REDIS_URL=own_redis)
    run_smoke(d, upstream, service=True)


def test_embedded_mode(deploy, upstream) -> None:
    d = deploy("embedded")
    run_smoke(d, upstream, service=False)
