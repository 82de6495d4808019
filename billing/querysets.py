"""Reusable token, usage and redemption-code queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q


class TokenQuerySet(models.QuerySet):
    def live(self) -> TokenQuerySet:
        return self.filter(deleted_at__isnull=True)


class VisibleUsage(models.QuerySet):
    def visible_to(self, user) -> Any:
        """Operators see everything, team admins what was charged to their
        team (requests made while a member), members their own."""
        if user.is_operator:
            return self
        if user.is_team_admin and user.team_id:
            return self.filter(team_id=user.team_id)
        return self.filter(user=user)


class UsageLogQuerySet(VisibleUsage):
    pass


class UsageRollupQuerySet(VisibleUsage):
    pass


class RedemptionCodeQuerySet(models.QuerySet):
    def unused(self, now: datetime) -> RedemptionCodeQuerySet:
        """Not redeemed and not expired at ``now``: what a redeem may claim."""
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), redeemed_at__isnull=True)

    def expired(self, now: datetime) -> RedemptionCodeQuerySet:
        return self.filter(redeemed_at__isnull=True, expires_at__lte=now)

    def redeemed(self) -> RedemptionCodeQuerySet:
        return self.filter(redeemed_at__isnull=False)
