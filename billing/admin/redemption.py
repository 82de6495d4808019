"""Admin for redemption codes: batches, CSV export, status filters."""

from __future__ import annotations

import csv
import re
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from billing import services
from billing.admin.shared import (
    usd,
)
from billing.models import (
    RedemptionCode,
)
from billing.money import to_micro, to_usd
from core.admin import (
    OperatorOnlyAdmin,
    is_operator,
)

# -- redemption codes ----------------------------------------------------------------


class RedemptionBatchForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128, help_text=_("Names the batch; filter and export by it."))
    count = forms.IntegerField(label=_("Count"), min_value=1, max_value=services.MAX_CODES_PER_BATCH)
    amount_usd = forms.DecimalField(
        label=_("Amount per code (USD)"), min_value=Decimal("0.000001"), max_digits=18, decimal_places=6
    )
    expires_at = forms.DateTimeField(
        label=_("Expires at"), required=False, help_text=_("UTC, e.g. 2026-12-31 23:59. Empty: never.")
    )

    def clean_expires_at(self) -> datetime | None:
        value = self.cleaned_data["expires_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError(_("Must be in the future."))
        return value


class RedemptionStatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unused", _("Unused")), ("redeemed", _("Redeemed")), ("expired", _("Expired"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "unused":
            return queryset.unused(now)
        if self.value() == "redeemed":
            return queryset.redeemed()
        if self.value() == "expired":
            return queryset.expired(now)
        return queryset


class BatchFilter(admin.SimpleListFilter):
    title = _("batch")
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = RedemptionCode.objects.order_by("-id").values_list("name", flat=True)
        return [(name, name) for name in dict.fromkeys(names[:5000])][:100]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(name=self.value()) if self.value() else queryset


CSV_COLUMNS = ["code", "name", "amount_usd", "expires_at", "status", "redeemed_by", "redeemed_at", "created_at"]


def codes_csv(codes: QuerySet[RedemptionCode], filename: str) -> HttpResponse:
    now = timezone.now()
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for code in codes.select_related("redeemed_by").order_by("pk"):
        writer.writerow(
            [
                code.code,
                code.name,
                to_usd(code.amount),
                code.expires_at.isoformat() if code.expires_at else "",
                code.status_at(now),
                code.redeemed_by.username if code.redeemed_by else "",
                code.redeemed_at.isoformat() if code.redeemed_at else "",
                code.created_at.isoformat(),
            ]
        )
    return response


@admin.register(RedemptionCode)
class RedemptionCodeAdmin(OperatorOnlyAdmin):
    """Batches are created on the add page; codes are handed out by CSV export
    (an action on selected codes, or "Export this batch" when filtered by batch)."""

    list_display = ("code", "name", "amount_usd", "status", "expires_at", "redeemed_by", "redeemed_at", "created_at")
    list_select_related = ("redeemed_by",)
    list_filter = (RedemptionStatusFilter, BatchFilter, "created_at")
    search_fields = ("code", "name", "redeemed_by__username")
    readonly_fields = ("code", "name", "amount_usd", "status", "redeemed_by", "redeemed_at", "created_by", "created_at")
    fields = (
        "code", "name", "amount_usd", "expires_at", "status", "redeemed_by", "redeemed_at", "created_by", "created_at",
    )  # fmt: skip
    actions = ["export_csv"]
    date_hierarchy = "created_at"

    def get_urls(self) -> list:
        export = path("export/", self.admin_site.admin_view(self.export_view), name="billing_redemptioncode_export")
        return [export, *super().get_urls()]

    def has_change_permission(self, request: HttpRequest, obj: RedemptionCode | None = None) -> bool:
        # Only the expiry of an unused code may change.
        return is_operator(request) and (obj is None or obj.redeemed_at is None)

    def has_delete_permission(self, request: HttpRequest, obj: RedemptionCode | None = None) -> bool:
        return is_operator(request) and (obj is None or obj.redeemed_at is None)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RedemptionBatchForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            codes = services.create_redemption_codes(
                name=data["name"],
                count=data["count"],
                amount=to_micro(data["amount_usd"]),
                expires_at=data["expires_at"],
                created_by=request.user,  # type: ignore[arg-type]
            )
            export = reverse("admin:billing_redemptioncode_export") + "?" + urlencode({"name": data["name"]})
            messages.success(
                request,
                format_html(
                    'Created {} code(s) in batch "{}". <a href="{}">Download them as CSV</a>.',
                    len(codes),
                    data["name"],
                    export,
                ),
            )
            changelist = reverse("admin:billing_redemptioncode_changelist") + "?" + urlencode({"name": data["name"]})
            return HttpResponseRedirect(changelist)
        return TemplateResponse(
            request,
            "admin/billing/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": _("Create a batch of redemption codes"),
                "intro": _("Each code credits its amount to the balance of the user who redeems it, once."),
                "form": form,
                "hidden": [],
                "submit_label": _("Create"),
            },
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        name = request.GET.get("name")
        if name:
            export = reverse("admin:billing_redemptioncode_export") + "?" + urlencode({"name": name})
            extra_context = {**(extra_context or {}), "export_url": export}
        return super().changelist_view(request, extra_context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not is_operator(request):
            raise PermissionDenied
        name = request.GET.get("name", "")
        codes = RedemptionCode.objects.filter(name=name) if name else RedemptionCode.objects.all()
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "all"
        return codes_csv(codes, f"redemption-codes-{slug}.csv")

    @admin.action(description=_("Export selected as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[RedemptionCode]) -> HttpResponse:
        return codes_csv(queryset, "redemption-codes.csv")

    @admin.display(description=_("amount"), ordering="amount")
    def amount_usd(self, obj: RedemptionCode) -> str | None:
        return usd(obj.amount)

    @admin.display(description=_("status"))
    def status(self, obj: RedemptionCode) -> str:
        return obj.status_at(timezone.now())
