"""WEB_CONCURRENCY: several relay/web processes in service mode; refused in
embedded mode, whose holds and balances live in its one relay process."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

LOAD_SETTINGS = "import django; django.setup(); from django.conf import settings; print(settings.WEB_CONCURRENCY)"


def _load(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOAD_SETTINGS],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "oneproxy.settings",
            "ONEPROXY_DATA_DIR": str(settings.DATA_DIR),
            "DATABASE_URL": "",
            **env,
        },
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_mode_refuses_more_than_one_relay_process() -> None:
    # when
    loaded = _load(WEB_CONCURRENCY="2", REDIS_URL="")
    # then
    assert loaded.returncode != 0
    assert "WEB_CONCURRENCY=2 needs service mode" in loaded.stderr


def test_service_mode_takes_it_and_embedded_mode_one() -> None:
    # when
    service = _load(WEB_CONCURRENCY="4", REDIS_URL="redis://127.0.0.1:6379/0")
    embedded = _load(WEB_CONCURRENCY="1", REDIS_URL="")
    bad = _load(WEB_CONCURRENCY="0", REDIS_URL="redis://127.0.0.1:6379/0")
    # then
    assert (service.returncode, service.stdout.strip()) == (0, "4")
    assert (embedded.returncode, embedded.stdout.strip()) == (0, "1")
    assert bad.returncode != 0 and "WEB_CONCURRENCY must be at least 1" in bad.stderr
