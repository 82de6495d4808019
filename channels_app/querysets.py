"""Reusable channel and key queries."""

from __future__ import annotations

from django.db import models


class ChannelQuerySet(models.QuerySet):
    def live(self) -> ChannelQuerySet:
        return self.filter(deleted_at__isnull=True)


class ChannelKeyQuerySet(models.QuerySet):
    def live(self) -> ChannelKeyQuerySet:
        return self.filter(deleted_at__isnull=True)

    def usable(self) -> ChannelKeyQuerySet:
        return self.live().filter(state__in=("active", "cooling"))
