"""Admin for the ledger and usage: read-only rows, summaries by period."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing import budgets, history
from billing.admin.shared import (
    TeamScopedAdmin,
    managed_team_id,
    usd,
)
from billing.models import (
    LedgerEntry,
    UsageLog,
)
from billing.money import to_usd
from core.admin import (
    OperatorOnlyAdmin,
    ReadOnlyAdminMixin,
    is_operator,
)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, OperatorOnlyAdmin):
    list_display = ("created_at", "user", "kind", "amount_usd", "balance_after_usd", "actor", "note", "charged_usage")
    list_select_related = ("user", "actor")
    list_filter = ("kind",)
    raw_id_fields = ("user", "actor")
    search_fields = ("user__username", "note")
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="amount", ordering="amount")
    def amount_usd(self, obj: LedgerEntry) -> str | None:
        return usd(obj.amount)

    @admin.display(description="balance after")
    def balance_after_usd(self, obj: LedgerEntry) -> str | None:
        return usd(obj.balance_after)

    @admin.display(description="usage")
    def charged_usage(self, obj: LedgerEntry) -> str:
        """A charge covers the user's usage rows of its settlement batch (an
        older charge: one row, named by id). Rows past the retention are
        pruned; the rollups keep their sums."""
        changelist = reverse("admin:billing_usagelog_changelist")
        if obj.batch_id is not None:
            return format_html(
                '<a href="{}?batch={}&amp;user={}">batch #{}</a>', changelist, obj.batch_id, obj.user_id, obj.batch_id
            )
        if obj.usage_id is not None:
            return format_html('<a href="{}?id={}">usage #{}</a>', changelist, obj.usage_id, obj.usage_id)
        return "—"


@admin.register(UsageLog)
class UsageLogAdmin(ReadOnlyAdminMixin, TeamScopedAdmin):
    list_display = (
        "created_at",
        "user",
        "token",
        "model",
        "channel",
        "status",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_usd",
        "latency_ms",
        "attempts",
    )
    list_select_related = ("user", "token", "channel")
    list_filter = ("model", "status", "stream", "estimated", "created_at")
    search_fields = ("request_id", "model", "user__username")
    date_hierarchy = "created_at"
    show_full_result_count = False
    # Channels and provider keys are operator business.
    operator_only_fields = ("channel", "key", "upstream_model", "group_multiplier", "team_multiplier")

    # A team admin sees what was charged to their team: requests made while a member.
    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(team_id=team_id)

    def in_team(self, obj: UsageLog, team_id: int) -> bool:
        return obj.team_id == team_id

    def get_list_display(self, request: HttpRequest) -> Any:
        if is_operator(request):
            return self.list_display
        return tuple(f for f in self.list_display if f not in self.operator_only_fields)

    def get_fields(self, request: HttpRequest, obj: UsageLog | None = None) -> Any:
        fields = [f.name for f in UsageLog._meta.concrete_fields if f.name not in ("id", "cost")]
        fields.insert(fields.index("group_multiplier"), "cost_usd")
        if not is_operator(request):
            fields = [f for f in fields if f not in self.operator_only_fields]
        return fields

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, obj: UsageLog) -> str | None:
        return usd(obj.cost)

    def get_urls(self) -> list:
        summary = path("summary/", self.admin_site.admin_view(self.summary_view), name="billing_usagelog_summary")
        return [summary, *super().get_urls()]

    def summary_view(self, request: HttpRequest) -> HttpResponse:
        """Totals per user, team, token, model or channel over a window; the
        same rows the caller may see in the list (GET /api/usage/summary/)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        choices = UsageSummaryForm.GROUPS if is_operator(request) else UsageSummaryForm.GROUPS[:-1]
        initial = {"group_by": "user", "since": budgets.period_start("month", timezone.now())}
        form = UsageSummaryForm(request.GET or initial, choices=choices)
        rows: list[dict[str, Any]] = []
        total: dict[str, Any] = {}
        window: dict[str, Any] = {}
        rounded = False
        if form.is_valid():
            team_id = managed_team_id(request)
            found = history.summary(
                form.cleaned_data["group_by"],
                since=form.cleaned_data["since"],
                until=form.cleaned_data["until"],
                filters={} if is_operator(request) else {"team_id": team_id},
            )
            rows = [{**row, "cost_usd": to_usd(row["cost"])} for row in found.results]
            total = {**found.total, "cost_usd": to_usd(found.total["cost"])}
            window = {"since": found.since, "until": found.until}
            rounded = (found.since, found.until) != (form.cleaned_data["since"], form.cleaned_data["until"])
        group_label = dict(choices).get(form.data.get("group_by", "user"), "")
        return TemplateResponse(
            request,
            "admin/billing/usagelog/summary.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Usage totals",
                "form": form,
                "rows": rows,
                "total": total,
                "window": window,
                "rounded": rounded,
                "group_label": group_label,
            },
        )


class UsageSummaryForm(forms.Form):
    GROUPS = [("user", "user"), ("team", "team"), ("token", "token"), ("model", "model"), ("channel", "channel")]

    group_by = forms.ChoiceField(choices=GROUPS)
    since = forms.DateTimeField(required=False, help_text="UTC")
    until = forms.DateTimeField(required=False, help_text="UTC")

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group_by"].choices = choices

    def clean_since(self) -> datetime | None:
        return _utc(self.cleaned_data["since"])

    def clean_until(self) -> datetime | None:
        return _utc(self.cleaned_data["until"])


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None
