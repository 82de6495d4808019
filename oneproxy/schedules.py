"""Default beat schedules, created once and then editable in the admin."""

from __future__ import annotations

import json

# name → (task, seconds, kwargs). Tasks appear here as their issues land.
DEFAULT_SCHEDULES: dict[str, tuple[str, int, dict]] = {
    "billing: settle stranded usage": ("billing.settle_usage", 60, {}),
    "billing: reconcile balances": ("billing.reconcile", 300, {}),
    # No days: ONEPROXY_USAGE_RETENTION_DAYS applies (a days argument overrides it).
    "billing: prune usage logs": ("billing.prune_usage_logs", 86_400, {}),
    # Every minute: only keys whose channel's probe interval has passed are probed.
    "channels: probe due keys": ("channels_app.probe_keys", 60, {"due_only": True}),
    "channels: refresh provider balances": ("channels_app.refresh_balances", 3_600, {}),
}


def ensure_schedules() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, (task, seconds, kwargs) in DEFAULT_SCHEDULES.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue  # operators may have edited it
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(name=name, task=task, interval=interval, kwargs=json.dumps(kwargs))
