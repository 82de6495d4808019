"""The one model both apps write: the config version the relay polls."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ConfigVersion(models.Model):
    """One row whose number goes up whenever anything the relay snapshots
    changes; relay processes poll it to know when to reload."""

    version = models.BigIntegerField(default=0, verbose_name=_("version"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    def __str__(self) -> str:
        return f"config version {self.version}"
