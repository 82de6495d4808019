"""The deployment smoke test's fixtures: a fresh copy of the repository (what
a fresh clone holds: the tracked and unignored files, so no .venv, data or
static), and the OpenAI emulator as the upstream.

`make smoke` runs this folder with --confcutdir here and without
pytest-django: the processes under test are `make run` in that copy, with a
venv that its Makefile builds from requirements.txt alone; nothing of the
suite's Django setup takes part.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.deploy.harness import free_port, wait_for
from tests.emulators.openai_api import OpenAIEmulator

REPO = Path(__file__).resolve().parents[2]
# Logs of every process of a run, kept for whoever reads a failure.
ARTIFACTS = REPO / "data" / "artifacts" / "smoke"


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("ONEPROXY_FAIL_ON_SKIP") == "1":
        pytest.fail(f"smoke test cannot run under ONEPROXY_FAIL_ON_SKIP=1: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fresh_clone() -> Iterator[Path]:
    """The working tree's files as a clone would have them, in a new folder."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    root = Path(tempfile.mkdtemp(prefix="oneproxy-smoke-"))
    root.chmod(0o755)  # a non-root user runs the image's steps (test_docker_steps.py)
    clone = root / "oneproxy"
    for name in filter(None, listed):
        source = REPO / os.fsdecode(name)
        if source.is_file():  # a tracked file deleted in the working tree is not there
            target = clone / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (clone / ".venv").exists() and not (clone / "static").exists()
    try:
        yield clone
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream() -> Iterator[OpenAIEmulator]:
    emulator = OpenAIEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A new, uniquely named database on the suite's PostgreSQL server; dropped after."""
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith(("postgres://", "postgresql://")):
        unavailable("service-mode smoke: set DATABASE_URL to a PostgreSQL server (any database on it)")
    import psycopg

    base = server.rsplit("/", 1)[0]
    name = f"oneproxy_smoke_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_redis(tmp_path) -> Iterator[str]:
    """A Redis server of this test's own: the shared one's default Celery queue
    is left to whoever else uses it."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("service-mode smoke: redis-server not found")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_for(up, 10, "redis-server up")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def runtime_venv(fresh_clone) -> Path:
    """The copy's .venv, from requirements.txt alone, by the target `make run` uses."""
    from tests.deploy.harness import user_env

    subprocess.run(["make", ".venv/.runtime"], cwd=fresh_clone, env=user_env(), check=True, capture_output=True)
    return fresh_clone / ".venv"
