"""Suite-wide fixtures and the two-mode switch.

`make test` runs this suite twice: embedded (SQLite, no Redis) and, when
DATABASE_URL and REDIS_URL are set, service mode (PostgreSQL + Redis).
Tests marked ``service`` run only in the latter, ``embedded`` only in the
former. With ONEPROXY_FAIL_ON_SKIP=1 (set by .ci/run) a service-mode test
that would be skipped fails instead.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.emulators.fixtures import *  # noqa: F403 - the upstream emulators
from tests.gateway import *  # noqa: F403 - the gateway under test

# Each xdist worker gets its own Redis key space (and pub/sub channels), and
# ONEPROXY_TEST_NAMESPACE separates concurrent runs of the suite from
# several checkouts on one Redis. pytest-django has loaded the settings
# before this conftest runs, so the prefix goes into both: the settings of
# this process, and the environment of the processes the tests start
# (further relays, Celery workers), whose settings read it again.
REDIS_PREFIX = (
    f"op-test-{os.environ.get('ONEPROXY_TEST_NAMESPACE', '')}{os.environ.get('PYTEST_XDIST_WORKER', 'main')}:"
)
os.environ["ONEPROXY_REDIS_PREFIX"] = REDIS_PREFIX
settings.ONEPROXY_REDIS_PREFIX = REDIS_PREFIX


# tests/deploy/ runs `make run` in a fresh copy of the repository, from outside;
# `make smoke` runs it on its own (CI too), never inside this suite.
collect_ignore = ["deploy"]


def _service_mode() -> bool:
    return bool(settings.SERVICE_MODE and "postgresql" in settings.DATABASES["default"]["ENGINE"])


def pytest_collection_modifyitems(config, items):
    service = _service_mode()
    for item in items:
        if "service" in item.keywords and not service:
            item.add_marker(pytest.mark.skip(reason="service mode: set DATABASE_URL (PostgreSQL) and REDIS_URL"))
        if "embedded" in item.keywords and service:
            item.add_marker(pytest.mark.skip(reason="embedded mode only"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("ONEPROXY_FAIL_ON_SKIP") == "1" and report.skipped and "service" in item.keywords:
        report.outcome = "failed"
        report.longrepr = f"service-mode test skipped under ONEPROXY_FAIL_ON_SKIP=1: {report.longrepr}"


@pytest.fixture(scope="session", autouse=True)
def _fresh_usage_journal(django_db_setup):
    """The test database is new each run; so is its usage journal (an old
    run's leftovers would be replayed into it)."""
    import shutil

    from billing.usage_sink import journal_dir

    shutil.rmtree(journal_dir(), ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _static_files() -> None:
    """Collected once per test process, as `make run` and the Docker build do:
    admin pages name the manifest's hashed files, so tests render them as a
    deployment does (and the live gateway serves them). Test processes of
    this checkout share STATIC_ROOT, so one collects at a time, and once per
    run: collectstatic deletes and rewrites every hashed file, so a second
    worker collecting while the first renders admin pages made those pages
    miss files (FileNotFoundError)."""
    import fcntl
    import hashlib
    import tempfile
    from pathlib import Path

    from django.core.management import call_command

    digest = hashlib.sha256(str(settings.STATIC_ROOT).encode()).hexdigest()[:16]
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    with (Path(tempfile.gettempdir()) / f"oneproxy-collectstatic-{digest}.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        if lock.read() != run:
            call_command("collectstatic", interactive=False, verbosity=0)
            lock.seek(0)
            lock.truncate()
            lock.write(run)
            lock.flush()


@pytest.fixture
def make_user(db):
    """make_user(username, role=..., team=..., group=...) → (user, access_token)."""
    from billing import services

    def make(username: str, **kwargs):
        return services.create_user(username=username, **kwargs)

    return make


@pytest.fixture
def operator(make_user):
    user, token = make_user("op", role="operator")
    return user, token


@pytest.fixture
def api():
    """api(access_token) → a DRF test client sending that Bearer token."""

    def client(token: str | None = None) -> APIClient:
        c = APIClient()
        if token:
            c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return c

    return client
