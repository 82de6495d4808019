"""Reusable token and usage queries."""

from __future__ import annotations

from django.db import models


class TokenQuerySet(models.QuerySet):
    def live(self) -> TokenQuerySet:
        return self.filter(deleted_at__isnull=True)


class UsageLogQuerySet(models.QuerySet):
    def visible_to(self, user) -> UsageLogQuerySet:  # type: ignore[no-untyped-def]
        if user.is_operator:
            return self
        if user.is_team_admin and user.team_id:
            return self.filter(user__team_id=user.team_id)
        return self.filter(user=user)
