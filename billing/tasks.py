"""Scheduled billing upkeep; each task is a thin call into billing.services.

Names are stable (docs/ARCHITECTURE.md, "Where code goes"): renaming one would strand
messages already queued under the old name.
"""

from __future__ import annotations

from celery import shared_task

from billing import services


@shared_task(name="billing.settle_usage")
def settle_usage() -> int:
    """Write usage a dead relay process left on the Redis stream (service mode only)."""
    return services.settle_stranded_usage()


@shared_task(name="billing.reconcile")
def reconcile(stale_hold_seconds: int = services.STALE_HOLD_SECONDS) -> int:
    """Fix balances that differ from their ledger, release stale holds; returns the report id."""
    return services.reconcile(stale_hold_seconds=stale_hold_seconds).pk


@shared_task(name="billing.prune_usage_logs")
def prune_usage_logs(days: int | None = None) -> int:
    """Delete rolled-up usage rows older than ``days`` (default:
    ONEPROXY_USAGE_RETENTION_DAYS); returns how many."""
    return services.prune_usage_logs(days=days)
