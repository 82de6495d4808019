"""The Docker image's steps, run natively (this machine has no Docker engine):
the build context that .dockerignore leaves, the Dockerfile's collectstatic
step, then its CMD, its HEALTHCHECK and compose.yaml's worker and beat
commands on that context. In the image they run as a user who owns nothing
but /data, so they must write nothing into the code folder: checked by what
changed there. What only an engine can show (the base image, COPY, USER,
the volume, compose's ordering) is not tested here; `docker-compose config`
checks compose.yaml in .ci/run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import REPO
from tests.deploy.harness import check_styled_admin, free_port, http, user_env, wait_for


def dockerignore(text: str) -> list[re.Pattern[str]]:
    """The patterns of a .dockerignore (the subset of its syntax used here)."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!") and "[" not in line, f"unsupported .dockerignore pattern: {line}"
        regex = ""
        for part in line.strip("/").split("/"):
            if part == "**":
                regex += r"(?:[^/]+/)*"
            else:
                regex += "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part) + "/"
        patterns.append(re.compile(regex.rstrip("/")))
    return patterns


def ignored(path: str, patterns: list[re.Pattern[str]]) -> bool:
    """Excluded when a pattern matches the path or any folder above it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def _tree(folder: Path) -> dict[str, float]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime for p in folder.rglob("*")}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder the image's user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="oneproxy-image-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def build_context(fresh_clone, scratch) -> Path:
    """What `docker build` would COPY into /app."""
    patterns = dockerignore((fresh_clone / ".dockerignore").read_text())
    context = scratch / "app"
    for folder, dirs, files in os.walk(fresh_clone):
        here = Path(folder).relative_to(fresh_clone).as_posix()
        prefix = "" if here == "." else f"{here}/"
        dirs[:] = [d for d in dirs if not ignored(prefix + d, patterns)]
        for name in files:
            if not ignored(prefix + name, patterns):
                (context / prefix).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder, name), context / prefix / name)
    return context


@pytest.fixture
def image_env(runtime_venv, scratch) -> dict[str, str]:
    """The container's environment: the venv's python first, the image's ENV
    with a data folder of its own."""
    data = scratch / "data"
    data.mkdir()
    return user_env(
        PATH=f"{runtime_venv / 'bin'}{os.pathsep}{user_env()['PATH']}",
        ONEPROXY_DATA_DIR=str(data),
        HOST="127.0.0.1",
        PORT=str(free_port()),
        HOSTNAME=socket.gethostname(),
        PYTHONDONTWRITEBYTECODE="1",
    )


def test_the_build_context_leaves_out_what_the_image_does_not_need(build_context) -> None:
    # given
    copied = {p.relative_to(build_context).as_posix() for p in build_context.rglob("*") if p.is_file()}
    # then
    for left_out in ("tests/", "bench/", "docs/", "data/", ".venv/", "static/", ".git/"):
        assert not any(name.startswith(left_out) for name in copied), left_out
    assert not any("__pycache__" in name for name in copied)
    for needed in ("manage.py", "requirements.txt", "oneproxy/settings.py", "relay/app.py", "billing/models.py"):
        assert needed in copied, needed
    # Every runtime package of the repository is in it.
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= {name.split("/")[0] for name in copied}, packages


def test_the_image_steps_serve_a_styled_admin_and_write_only_to_data(fresh_clone, build_context, image_env, artifacts):
    instructions = dockerfile_instructions((fresh_clone / "docker" / "Dockerfile").read_text())
    compose = yaml.safe_load((fresh_clone / "docker" / "compose.yaml").read_text())
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] != "root"

    # when: the build's collectstatic step (as root, like the build)
    (collect,) = [args for op, args in instructions if op == "RUN" and "collectstatic" in args]
    subprocess.run(["sh", "-c", collect], cwd=build_context, env=image_env, check=True)
    # then: the files are in the image, and no secret was left behind
    assert (build_context / "static" / "staticfiles.json").exists()
    assert not list(build_context.rglob("secret_key")) and not list(build_context.rglob("oneproxy_encryption_key"))
    built = _tree(build_context)

    # when: the container starts (CMD), with worker and beat as compose runs them
    (cmd,) = [json.loads(args) for op, args in instructions if op == "CMD"]
    processes: dict[str, subprocess.Popen] = {}
    logs = {name: artifacts / f"image-{name}.log" for name in ("web", "worker", "beat")}

    def failure(message: str) -> str:
        shown = (f"\n--- {n} ---\n{p.read_text(errors='replace')[-3000:]}" for n, p in logs.items() if p.exists())
        return message + "".join(shown)

    def start(name: str, command: list[str]) -> None:
        with logs[name].open("wb") as out:
            processes[name] = subprocess.Popen(
                command,
                cwd=build_context,
                env=image_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def web_ready() -> bool:
        assert processes["web"].poll() is None, failure(f"web exited with {processes['web'].returncode}")
        return http("GET", f"http://127.0.0.1:{image_env['PORT']}/readyz").status == 200

    try:
        start("web", cmd)
        wait_for(web_ready, 120, failure("web ready"))
        start("worker", compose["services"]["worker"]["command"])
        start("beat", compose["services"]["beat"]["command"])

        url = f"http://127.0.0.1:{image_env['PORT']}"
        # then: a styled admin, a passing healthcheck, a worker that answers its own
        check_styled_admin(url, failure)
        (healthcheck,) = [args for op, args in instructions if op == "HEALTHCHECK"]
        check = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
        assert subprocess.run(check, env=image_env, timeout=30).returncode == 0
        worker_check = compose["services"]["worker"]["healthcheck"]["test"]
        assert worker_check[0] == "CMD-SHELL"
        ping = worker_check[1].replace("$$", "$")  # compose's escape for a literal $
        wait_for(
            lambda: subprocess.run(["sh", "-c", ping], env=image_env, timeout=60).returncode == 0,
            60,
            failure("worker healthcheck"),
            interval=1,
        )
        for name, proc in processes.items():
            assert proc.poll() is None, failure(f"{name} exited with {proc.returncode}")

        # when: docker stop (SIGTERM), the web server
        processes["web"].send_signal(signal.SIGTERM)
        # then: it is gone well within docker's 10 s grace, and the healthcheck fails
        # (uvicorn shuts down, then re-raises the signal it caught)
        assert processes["web"].wait(10) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in logs["web"].read_text(), failure("web shutdown")
        assert subprocess.run(check, env=image_env, capture_output=True).returncode != 0
        # and: nothing was written into the code folder (the image's user could not)
        processes["worker"].send_signal(signal.SIGTERM)
        processes["beat"].send_signal(signal.SIGTERM)
        processes["worker"].wait(30), processes["beat"].wait(30)
        changed = sorted(set(_tree(build_context).items()) ^ set(built.items()))
        assert not changed, changed
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
