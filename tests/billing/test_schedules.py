"""The billing tasks are registered under their contract names and scheduled in beat."""

from __future__ import annotations

import json

import pytest

from oneproxy.celery import app
from oneproxy.schedules import ensure_schedules

NAMES = {"billing.settle_usage", "billing.reconcile", "billing.prune_usage_logs"}


def test_tasks_carry_their_contract_names() -> None:
    # given
    import billing.tasks  # noqa: F401 - registers the tasks

    # then
    assert NAMES <= set(app.tasks)


@pytest.mark.django_db
def test_beat_runs_each_billing_task() -> None:
    # given
    from django_celery_beat.models import PeriodicTask

    # when
    ensure_schedules()
    # then
    scheduled = {
        t.task: (t.interval.every, t.interval.period, json.loads(t.kwargs))
        for t in PeriodicTask.objects.filter(task__in=NAMES).select_related("interval")
    }
    assert scheduled == {
        "billing.settle_usage": (60, "seconds", {}),
        "billing.reconcile": (300, "seconds", {}),
        "billing.prune_usage_logs": (86_400, "seconds", {}),  # the retention setting applies
    }
