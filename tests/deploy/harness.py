"""What the deployment smoke tests share: plain HTTP from outside (stdlib
only), waiting, free ports, a user's environment, and the processes of a
process group."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What a user's shell would not have, or would set for itself.
DROPPED_ENV = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "SQL_DSN",
    "REDIS_URL",
    "PORT",
    "HOST",
    "DEBUG",
    "SECRET_KEY",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def user_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in DROPPED_ENV and not k.startswith(("ONEPROXY_", "PYTEST_", "CELERY_", "WEB_", "LOG_"))
    }
    # No virtualenv of the suite's on the PATH: `make run` uses the system's python3.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not Path(p, "activate").exists())
    env.update(extra)
    return env


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return Response(0, {}, b"")


def group_processes(pgid: int) -> dict[int, str]:
    """pid → command line of every live process in the process group."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found[int(entry.name)] = cmdline
    return found


def check_styled_admin(url: str, failure: Callable[[str], str] = str) -> None:
    """The login page links the collected, hashed stylesheet, and it is served
    as CSS, compressed, with far-future cache headers."""
    import re

    page = http("GET", f"{url}/admin/login/")
    assert page.status == 200, failure(f"/admin/login/ answered {page.status}")
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.body)
    assert css, failure(f"no hashed stylesheet in /admin/login/: {page.body[:2000]!r}")
    sheet = http("GET", url + css.group(1).decode(), headers={"Accept-Encoding": "gzip"})
    assert sheet.status == 200, failure(f"{css.group(1)!r} answered {sheet.status}")
    assert sheet.headers["content-type"].startswith("text/css")
    assert sheet.headers.get("content-encoding") == "gzip"
    assert "immutable" in sheet.headers["cache-control"] and "max-age=315360000" in sheet.headers["cache-control"]
