"""The admin's CSS and JS are served by the ASGI application in its own
process, with DEBUG off (the collected, hashed and compressed files, cached
for good) and on (the apps' own files, never cached)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
import requests
from django.conf import settings

from tests.gateway import wait_for


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def web(transactional_db) -> Iterator[Callable[..., str]]:
    """web(DEBUG="true") → the URL of uvicorn serving oneproxy.asgi in a process of its own."""
    started: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "oneproxy.asgi:application",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env={
                **os.environ,
                "DATABASE_URL": _database_url(),
                "REDIS_URL": settings.REDIS_URL or "",
                "ONEPROXY_DATA_DIR": str(settings.DATA_DIR),
                "DJANGO_SETTINGS_MODULE": "oneproxy.settings",
                **env,
            },
            cwd=settings.BASE_DIR,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or busy starting on a loaded machine
                assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
                return False

        wait_for(up, timeout=30, interval=0.2)
        return url

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        proc.wait(20)


def _stylesheets(url: str) -> list[str]:
    page = requests.get(f"{url}/admin/login/", timeout=10)
    assert page.status_code == 200
    return re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)


def test_debug_off_serves_the_collected_hashed_files_cached_for_good(web) -> None:
    # given
    url = web(DEBUG="false")
    # when
    sheets = _stylesheets(url)
    base = next(s for s in sheets if "/admin/css/base." in s)
    answer = requests.get(url + base, headers={"Accept-Encoding": "gzip"}, timeout=10)
    # then
    assert re.fullmatch(r"/static/admin/css/base\.[0-9a-f]{12}\.css", base), sheets
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/css")
    assert answer.headers["Content-Encoding"] == "gzip"
    assert answer.headers["Cache-Control"] == "max-age=315360000, public, immutable"
    assert "#header" in answer.text
    for sheet in sheets:
        assert requests.get(url + sheet, timeout=10).status_code == 200, sheet


def test_debug_on_serves_the_apps_own_files(web) -> None:
    # given
    url = web(DEBUG="true")
    # when
    sheets = _stylesheets(url)
    answer = requests.get(f"{url}/static/admin/css/base.css", timeout=10)
    script = requests.get(f"{url}/static/admin/js/vendor/jquery/jquery.js", timeout=10)
    # then
    assert "/static/admin/css/base.css" in sheets
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/css")
    assert answer.headers["Cache-Control"] == "max-age=0, public"
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert requests.get(f"{url}/static/admin/css/no-such-file.css", timeout=10).status_code == 404
