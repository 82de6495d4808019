"""Default beat schedules, created once and then editable in the admin."""

from __future__ import annotations

import json

# name → (task, seconds, kwargs). Tasks appear here as their issues land.
DEFAULT_SCHEDULES: dict[str, tuple[str, int, dict]] = {}


def ensure_schedules() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, (task, seconds, kwargs) in DEFAULT_SCHEDULES.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue  # operators may have edited it
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(name=name, task=task, interval=interval, kwargs=json.dumps(kwargs))
