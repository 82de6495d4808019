"""Reusable token, usage and redemption-code queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce


class TokenQuerySet(models.QuerySet):
    def live(self) -> TokenQuerySet:
        return self.filter(deleted_at__isnull=True)


TOTAL_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost")

# group_by value → (the column grouped on, the column that names the group)
SUMMARY_GROUPS: dict[str, tuple[str, str | None]] = {
    "user": ("user_id", "user__username"),
    "team": ("user__team_id", "user__team__name"),
    "token": ("token_id", "token__name"),
    "model": ("model", None),
    "channel": ("channel_id", "channel__name"),
}


class UsageLogQuerySet(models.QuerySet):
    def visible_to(self, user) -> UsageLogQuerySet:
        if user.is_operator:
            return self
        if user.is_team_admin and user.team_id:
            return self.filter(user__team_id=user.team_id)
        return self.filter(user=user)

    def totals(self) -> dict[str, int]:
        """requests, prompt/completion/cached tokens and cost (µUSD) of these rows."""
        return self.aggregate(**_totals())

    def summary(self, group_by: str) -> list[dict[str, Any]]:
        """Totals per user, team, token, model or channel, biggest cost first.
        Each row: ``key`` (id, or the model name), ``name`` and the totals.
        Teams are the users' teams now, not when the request was made."""
        key, label = SUMMARY_GROUPS[group_by]
        columns = [key] if label is None else [key, label]
        rows = self.order_by().values(*columns).annotate(**_totals()).order_by("-cost", key)
        return [
            {
                "key": row[key],
                "name": row[label] if label is not None else row[key],
                **{name: row[name] for name in TOTAL_FIELDS},
            }
            for row in rows
        ]


def _totals() -> dict[str, Any]:
    # Built per query: aggregate expressions are not shared between querysets.
    return {
        "requests": Count("id"),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
        "cost": Coalesce(Sum("cost"), 0),
    }


class RedemptionCodeQuerySet(models.QuerySet):
    def unused(self, now: datetime) -> RedemptionCodeQuerySet:
        """Not redeemed and not expired at ``now``: what a redeem may claim."""
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), redeemed_at__isnull=True)

    def expired(self, now: datetime) -> RedemptionCodeQuerySet:
        return self.filter(redeemed_at__isnull=True, expires_at__lte=now)

    def redeemed(self) -> RedemptionCodeQuerySet:
        return self.filter(redeemed_at__isnull=False)
