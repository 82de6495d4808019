"""The gateway under test for the reliability run, as `make run` starts it,
in either mode, on its own data: a fresh SQLite database (embedded) or a
fresh PostgreSQL database and a redis-server of its own on a free port
(service), the emulator upstream, and relay processes that can be killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG_URL = os.environ.get("RELIABILITY_PG", "postgres://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


@dataclass
class Redis:
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="oneproxy-rel-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: _ping(self.port), 10, "redis-server")
        return self

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@dataclass
class Stack:
    """One mode's gateway: database, (Redis,) upstream, relays."""

    mode: str  # "embedded" | "service"
    workdir: Path
    redis: Redis | None = None
    upstream: subprocess.Popen | None = None
    upstream_url: str = ""
    upstream_root: str = ""
    relays: list[tuple[subprocess.Popen, int, Path]] = field(default_factory=list)
    key: str = ""
    user_id: int = 0
    env: dict[str, str] = field(default_factory=dict)
    database: str = ""  # service mode: the PostgreSQL database made for the run, dropped at stop

    def start(self, redis_timeout_ms: int = 500) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        env = {
            **os.environ,
            "ONEPROXY_DATA_DIR": str(data),
            "DJANGO_SETTINGS_MODULE": "oneproxy.settings",
            "ONEPROXY_REDIS_TIMEOUT_MS": str(redis_timeout_ms),
            "ONEPROXY_REDIS_PREFIX": "op-rel:",
            # Stalled bodies answered in 2 s, not 30: the run stays short.
            "ONEPROXY_BODY_TIMEOUT_SECONDS": "2",
            "LOG_FORMAT": "plain",
        }
        if self.mode == "service":
            name = self.database = f"oneproxy_reliability_{os.getpid()}"
            subprocess.run(["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", name], check=False)
            subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
            self.redis = Redis().start()
            env["DATABASE_URL"] = f"{PG_URL}/{name}"
            env["REDIS_URL"] = self.redis.url
        else:
            env["DATABASE_URL"] = f"sqlite:///{data}/db.sqlite3"
            env.pop("REDIS_URL", None)
        self.env = env
        port_file = self.workdir / "upstream.json"
        self.upstream = subprocess.Popen(
            [PYTHON, "-m", "reliability.upstream", str(port_file)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
        )
        wait_until(port_file.exists, 30, "upstream emulator")
        info = json.loads(port_file.read_text())
        self.upstream_url, self.upstream_root = info["url"], info["root"]
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [PYTHON, "-m", "reliability.seed", self.upstream_url],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        facts = json.loads(seeded.stdout.strip().splitlines()[-1])
        self.key, self.user_id = facts["key"], facts["user_id"]
        return self

    def start_relay(self) -> str:
        port = free_port()
        log = self.workdir / f"relay-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [PYTHON, "-m", "uvicorn", "oneproxy.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                 "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "on"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/v1/models", timeout=1).status_code == 401, 60, "relay")
        headers = {"Authorization": f"Bearer {self.key}"}
        wait_until(lambda: requests.get(f"{url}/v1/models", headers=headers, timeout=1).ok, 30, "relay key")
        self.relays.append((proc, port, log))
        return url

    def kill9_relay(self, url: str) -> None:
        for proc, port, _ in self.relays:
            if url.endswith(f":{port}"):
                proc.kill()
                proc.wait(10)

    def behave(self, key: str, behaviour: str, **options: object) -> None:
        requests.post(
            f"{self.upstream_root}/_control/behaviour",
            json={"key": key, "behaviour": behaviour, "options": options},
            timeout=5,
        ).raise_for_status()

    def reset_upstream(self) -> None:
        requests.post(f"{self.upstream_root}/_control/behaviour", json={"reset": True}, timeout=5).raise_for_status()

    def manage(self, *args: str) -> str:
        """A management script (reliability/books.py) against this stack's database."""
        done = subprocess.run([PYTHON, "-m", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True)
        return done.stdout.strip().splitlines()[-1]

    def processes(self) -> dict[str, int]:
        out = {f"relay:{port}": proc.pid for proc, port, _ in self.relays if proc.poll() is None}
        if self.upstream is not None:
            out["upstream emulator"] = self.upstream.pid
        if self.redis is not None and self.redis.proc is not None:
            out["redis-server"] = self.redis.proc.pid
        return out

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for _, _, path in self.relays)

    def stop(self) -> None:
        for proc, _, _ in self.relays:
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in self.relays:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.upstream is not None:
            self.upstream.terminate()
            self.upstream.wait(10)
        if self.redis is not None:
            self.redis.stop()
        if self.database:
            subprocess.run(["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", self.database], check=False)
