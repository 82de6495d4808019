"""Writes both apps make: telling the relay that its snapshot is stale."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from core.models import ConfigVersion


def bump_config_version() -> None:
    """Tell every relay process to reload its snapshots (they poll this row)."""
    updated = ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1, updated_at=timezone.now())
    if not updated:
        ConfigVersion.objects.get_or_create(pk=1, defaults={"version": 1})


def config_version() -> int:
    return ConfigVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0
