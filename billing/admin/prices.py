"""Admin for model prices (USD per 1M tokens, per request, per image)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from billing.models import (
    ModelPrice,
)
from core.admin import (
    OperatorOnlyAdmin,
)
from relay.channel_types import CHOICES as CHANNEL_TYPE_CHOICES

# -- prices, ledger, usage -------------------------------------------------------


class ModelPriceForm(forms.ModelForm):
    channel_type = forms.ChoiceField(
        label=_("Channel type"),
        choices=[("", _("any")), *CHANNEL_TYPE_CHOICES],
        required=False,
        help_text=_("Price only for channels of this type; 'any' applies everywhere else."),
    )

    class Meta:
        model = ModelPrice
        fields = (
            "model", "channel_type", "input", "output", "cached_input", "cache_write", "audio", "per_request",
            "per_image", "source", "as_of",
        )  # fmt: skip


_PRICE_COLUMNS = {"input", "output", "cached_input", "cache_write", "audio", "per_request", "per_image"}


@admin.register(ModelPrice)
class ModelPriceAdmin(OperatorOnlyAdmin):
    form = ModelPriceForm
    list_display = (
        "model",
        "channel_type",
        "input",
        "output",
        "cached_input",
        "cache_write",
        "audio",
        "per_request",
        "per_image",
        "as_of",
        "updated_at",
    )
    list_editable = ("input", "output", "cached_input", "cache_write", "audio", "per_request", "per_image")
    list_filter = ("channel_type", "as_of")
    search_fields = ("model", "source")

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        # A price edited here is no longer the catalogue's: say so, unless the
        # operator recorded a new source with it.
        if change and _PRICE_COLUMNS & set(form.changed_data) and "source" not in form.changed_data:
            obj.source, obj.as_of = "", None
        super().save_model(request, obj, form, change)
