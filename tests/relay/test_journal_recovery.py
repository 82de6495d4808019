"""Embedded mode: a relay answers once a request's usage is in its journal,
not in the database; killed before settling, it loses no usage, and
billing.settle_usage charges every completed request exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3

import pytest
from django.conf import settings

from tests.billing.events import assert_books_exact
from tests.gateway import wait_for_key
from tests.relay.test_crash_recovery import load

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def test_killed_with_unsettled_usage_then_settled_once(relay_setup, spawn_relay):
    from billing import services
    from billing.models import UsageLog

    user, key = relay_setup["user"], relay_setup["key"]
    victim = spawn_relay()
    wait_for_key(victim.url, key)
    # given: the database takes no writes (another writer holds its lock), so
    # the relay can settle nothing
    lock = sqlite3.connect(settings.DATABASES["default"]["NAME"], isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        # when: requests complete anyway (their usage is journaled), then the relay is killed
        answers = asyncio.run(load([victim.url], key, 12))
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert [status for status, _ in answers] == [200] * 12
    completed = [request_id for _, request_id in answers]
    assert not UsageLog.objects.filter(request_id__in=completed).exists()
    # and then: the dead relay's journal is settled, every request charged once
    assert services.settle_stranded_usage() == 12
    rows = UsageLog.objects.filter(request_id__in=completed)
    assert rows.count() == 12
    assert_books_exact(user)
    assert services.settle_stranded_usage() == 0
