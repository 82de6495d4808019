"""Scheduled key-pool upkeep; each task is a thin call into channels_app.

Names are stable (docs/ARCHITECTURE.md, "Where code goes"): renaming one would strand
messages already queued under the old name. Failures are logged with the
channel and key id, never a secret; task arguments hold no secret either.
"""

from __future__ import annotations

from celery import shared_task

from channels_app import notify as notifications
from channels_app import probe, services


@shared_task(name="channels_app.probe_keys")
def probe_keys(channel_id: int | None = None, due_only: bool = False) -> dict:
    """Probe keys with a 1-token chat: all but manually disabled ones now, or
    (beat, ``due_only``) those whose channel's probe interval has passed."""
    channel_ids = None if channel_id is None else [channel_id]
    results = probe.probe_keys(channel_ids=channel_ids, due_only=due_only)
    return {"probed": len(results), "failed": sum(not r.ok for r in results)}


@shared_task(name="channels_app.refresh_balances")
def refresh_balances(channel_id: int | None = None) -> dict:
    """Fetch provider balances and apply each channel's ``min_balance``."""
    readings = services.refresh_balances(channel_id=channel_id)
    return {"read": sum(r.balance is not None for r in readings), "failed": sum(r.balance is None for r in readings)}


@shared_task(name=notifications.NOTIFY_TASK)
def notify(event: dict) -> int:
    """Tell operators about one key transition (webhook and/or email)."""
    return notifications.send(event)
