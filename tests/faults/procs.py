"""Processes the fault tests start and break: a Redis of their own on a free
port (frozen with SIGSTOP, killed), and relay processes whose log is kept.
Never the shared Redis on 6379."""

from __future__ import annotations

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
from django.conf import settings

__all__ = ["OwnRedis", "RelayProc", "free_port", "start_relay"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OwnRedis:
    """A redis-server of the test's own; ``freeze``/``thaw`` stop and resume
    it (SIGSTOP/SIGCONT: connections open, nothing answered), ``kill`` ends it."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="oneproxy-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("own redis-server did not start")

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


@dataclass
class RelayProc:
    url: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def database_url() -> str:
    db = settings.DATABASES["default"]
    if "postgresql" in db["ENGINE"]:
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def start_relay(log_dir: Path, *, redis_url: str | None = None, env: dict[str, str] | None = None) -> RelayProc:
    """A relay (and web) process on the test database, as ``make run`` starts
    it, with its log in ``log_dir``. ``redis_url`` None: settings' own."""
    port = free_port()
    log_path = log_dir / f"relay-{port}.log"
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL or "" if redis_url is None else redis_url,
        "ONEPROXY_DATA_DIR": str(settings.DATA_DIR),
        "DJANGO_SETTINGS_MODULE": "oneproxy.settings",
        **(env or {}),
    }
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "oneproxy.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"relay exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(f"{url}/v1/models", timeout=1).status_code == 401:
                return RelayProc(url, proc, log_path)
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("relay did not start")
