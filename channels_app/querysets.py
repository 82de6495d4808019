"""Reusable channel and key queries."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q


class ChannelQuerySet(models.QuerySet):
    def live(self) -> ChannelQuerySet:
        return self.filter(deleted_at__isnull=True)


def _older_than(field: str, cutoff: datetime) -> Q:
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": cutoff})


class ChannelKeyQuerySet(models.QuerySet):
    def live(self) -> ChannelKeyQuerySet:
        return self.filter(deleted_at__isnull=True)

    def usable(self) -> ChannelKeyQuerySet:
        return self.live().filter(state__in=("active", "cooling"))

    def due_for_probe(self, now: datetime) -> ChannelKeyQuerySet:
        """Keys of enabled channels whose scheduled probe is due: active keys
        not proven (by a probe or by real traffic) within their channel's
        ``probe_interval``; cooling (cool-down over) and auto-disabled keys
        not probed within ``recovery_probe_interval``. A key disabled for a low
        balance is left to the balance check, which re-enables it."""
        channel_model = self.model._meta.get_field("channel").related_model

        # One clause per distinct pair of intervals, not per channel: most
        # channels keep the defaults.
        by_intervals: dict[tuple[int, int], list[int]] = defaultdict(list)
        channels = channel_model.objects.live().filter(status="enabled")
        for channel_id, every, recovery in channels.values_list("id", "probe_interval", "recovery_probe_interval"):
            by_intervals[(every, recovery)].append(channel_id)
        due = Q(pk__in=[])
        for (every, recovery), channel_ids in by_intervals.items():
            if every:
                cutoff = now - timedelta(seconds=every)
                due |= (
                    Q(channel_id__in=channel_ids, state="active")
                    & _older_than("last_probed_at", cutoff)
                    & _older_than("last_success_at", cutoff)
                )
            if recovery:
                cutoff = now - timedelta(seconds=recovery)
                due |= (
                    Q(channel_id__in=channel_ids, state__in=("cooling", "auto_disabled"))
                    & _older_than("last_probed_at", cutoff)
                    & (Q(cooldown_until__isnull=True) | Q(cooldown_until__lte=now))
                    & ~Q(state="auto_disabled", state_reason="low_balance")
                )
        return self.live().filter(due)
