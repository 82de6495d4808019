"""Admin for the ledger and usage: read-only rows, summaries by period."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from billing import budgets, history
from billing.admin.shared import (
    TeamScopedAdmin,
    managed_team_id,
    usd,
)
from billing.api import scoped
from billing.models import (
    LedgerEntry,
    UsageLog,
    UsageRollup,
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

    @admin.display(description=_("amount"), ordering="amount")
    def amount_usd(self, obj: LedgerEntry) -> str | None:
        return usd(obj.amount)

    @admin.display(description=_("balance after"))
    def balance_after_usd(self, obj: LedgerEntry) -> str | None:
        return usd(obj.balance_after)

    @admin.display(description=_("usage"))
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


class OutcomeFilter(admin.SimpleListFilter):
    """Answered, refused by us or the upstream (4xx), failed upstream (5xx)."""

    title = _("outcome")
    parameter_name = "outcome"
    RANGES = {"ok": (0, 400), "4xx": (400, 500), "5xx": (500, 1000)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("ok", _("succeeded")), ("4xx", _("client errors (4xx)")), ("5xx", _("upstream errors (5xx)"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in self.RANGES:
            return queryset
        low, high = self.RANGES[self.value()]  # type: ignore[index]
        return queryset.filter(status__gte=low, status__lt=high)


def window_bound(text: str | None) -> datetime | None:
    """A since / until bound typed in the explorer ("2026-01-31", "2026-01-31
    08:00"), in UTC; None when empty. A typo is the admin's "invalid lookup"."""
    if not text:
        return None
    try:
        value = forms.DateTimeField().clean(text)
    except forms.ValidationError as exc:
        raise IncorrectLookupParameters(exc) from exc
    return _utc(value)


class WindowFilter(admin.ListFilter):
    """[since, until) on created_at, typed above the list (UTC)."""

    title = _("window (UTC)")
    template = "admin/billing/usagelog/window_filter.html"
    PARAMETERS = ("since", "until")

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.PARAMETERS:
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return list(self.PARAMETERS)

    def choices(self, changelist: Any) -> list[dict[str, Any]]:
        # One "choice": the form, keeping the other filters of the page.
        kept = [(k, v) for k, v in changelist.params.items() if k not in (*self.PARAMETERS, "p")]
        return [{"kept": kept, **{name: self.used_parameters.get(name, "") for name in self.PARAMETERS}}]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        since, until = (window_bound(self.used_parameters.get(name)) for name in self.PARAMETERS)
        if since is not None:
            queryset = queryset.filter(created_at__gte=since)
        if until is not None:
            queryset = queryset.filter(created_at__lt=until)
        return queryset


class OperatorsOnlyFilter(admin.RelatedFieldListFilter):
    """Channel and team choices list every channel or team: operators only.
    Cheap on a big usage table: the choices come from the related table."""

    def has_output(self) -> bool:
        return is_operator(self.request) and super().has_output()

    def __init__(self, field: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.request = request
        super().__init__(field, request, *args, **kwargs)


class ModelFilter(admin.SimpleListFilter):
    """The models used, from the day rollups: a DISTINCT over a million raw
    rows on every page view is what this avoids."""

    title = _("model")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rollups = UsageRollup.objects.filter(span=UsageRollup.Span.DAY)
        team_id = managed_team_id(request)
        if not is_operator(request):
            rollups = rollups.filter(team_id=team_id) if team_id is not None else rollups.none()
        models = rollups.order_by("model").values_list("model", flat=True).distinct()
        return [(m, m) for m in models]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model=self.value()) if self.value() else queryset


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows, so a page of a table of millions never
    waits on a full COUNT(*); past it the page says "more than …"."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.COUNT_CAP + 1].count()


# Columns of the CSV export, and what operators alone see of them.
EXPORT_COLUMNS = (
    ("created_at", "created_at"),
    ("request_id", "request_id"),
    ("user", "user__username"),
    ("token", "token__name"),
    ("endpoint", "endpoint"),
    ("model", "model"),
    ("upstream_model", "upstream_model"),
    ("channel", "channel__name"),
    ("key", "key__hint"),
    ("prompt_tokens", "prompt_tokens"),
    ("completion_tokens", "completion_tokens"),
    ("cached_tokens", "cached_tokens"),
    ("cost_usd", "cost"),
    ("latency_ms", "latency_ms"),
    ("attempts", "attempts"),
    ("status", "status"),
    ("stream", "stream"),
    ("estimated", "estimated"),
    ("error", "error"),
)
EXPORT_OPERATOR_ONLY = ("upstream_model", "channel", "key")


class _Echo:
    """A file whose write returns what it was given: csv.writer formats a row,
    the streaming response sends it."""

    def write(self, value: str) -> str:
        return value


@admin.register(UsageLog)
class UsageLogAdmin(ReadOnlyAdminMixin, TeamScopedAdmin):
    """The usage explorer: every request with its model, channel, key hint,
    tokens, cost, latency, attempts, status and error; filters; a CSV export
    of what the filters show; totals from the same function as the API's
    /api/usage/summary/."""

    list_display = (
        "created_at",
        "user",
        "token_name",
        "model",
        "channel",
        "key_hint",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "attempts",
        "error_text",
    )
    list_select_related = ("user", "token", "channel", "key")
    list_filter = (
        WindowFilter,
        OutcomeFilter,
        ("channel", OperatorsOnlyFilter),
        ("team", OperatorsOnlyFilter),
        ModelFilter,
        "stream",
        "estimated",
        "created_at",
    )
    search_fields = ("=request_id", "model", "user__username")
    # No date_hierarchy: its year/month links are a DISTINCT over the whole
    # table on every page view. The created_at filter and since/until do it.
    show_full_result_count = False
    # Facet counts are a COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 50
    # Rows of one CSV export at most: the filters narrow a bigger one.
    export_max_rows = 100_000
    # Channels and provider keys are operator business.
    operator_only_fields = ("channel", "key", "key_hint", "upstream_model", "group_multiplier", "team_multiplier")

    # A team admin sees what was charged to their team: requests made while a member.
    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(team_id=team_id)

    def in_team(self, obj: UsageLog, team_id: int) -> bool:
        return obj.team_id == team_id

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # Links from the totals and the dashboard name a user or a token.
        if lookup in ("user__id__exact", "token__id__exact"):
            return True
        return super().lookup_allowed(lookup, value, request)  # type: ignore[call-arg]

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

    @admin.display(description=_("cost"), ordering="cost")
    def cost_usd(self, obj: UsageLog) -> str | None:
        return usd(obj.cost)

    @admin.display(description=_("token"), ordering="token__name")
    def token_name(self, obj: UsageLog) -> str:
        return obj.token.name if obj.token_id is not None else "—"  # type: ignore[union-attr]

    @admin.display(description=_("key"))
    def key_hint(self, obj: UsageLog) -> str:
        return obj.key.hint if obj.key_id is not None else "—"  # type: ignore[union-attr]

    @admin.display(description=_("error"))
    def error_text(self, obj: UsageLog) -> str:
        if not obj.error:
            return ""
        if len(obj.error) <= 80:
            return obj.error
        return format_html('<span title="{}">{}…</span>', obj.error, obj.error[:80])

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            cl = context["cl"]
            context["totals"] = explorer_totals(request, cl)
            context["export_query"] = request.GET.urlencode()
        return response

    def export_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The rows the changelist shows with the same filters, search and
        order, as CSV, streamed from the database in chunks; at most
        ``export_max_rows`` rows (the last line says when it was cut)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = self.get_changelist_instance(request).get_queryset(request)
        columns = [
            (name, field) for name, field in EXPORT_COLUMNS if is_operator(request) or name not in EXPORT_OPERATOR_ONLY
        ]
        values = rows.values_list(*(field for _name, field in columns))
        cost = [name for name, _field in columns].index("cost_usd")
        limit = self.export_max_rows

        def lines() -> Any:
            writer = csv.writer(_Echo())
            yield writer.writerow([name for name, _field in columns])
            sent = 0
            for row in values[: limit + 1].iterator(chunk_size=2_000):
                if sent == limit:
                    yield writer.writerow([f"# cut at {limit} rows: narrow the filters"])
                    return
                row = list(row)
                row[0] = row[0].isoformat()
                row[cost] = to_usd(row[cost])
                yield writer.writerow(row)
                sent += 1

        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-{stamp}.csv"'
        return response

    def get_urls(self) -> list:
        summary = path("summary/", self.admin_site.admin_view(self.summary_view), name="billing_usagelog_summary")
        export = path("export.csv", self.admin_site.admin_view(self.export_view), name="billing_usagelog_export")
        return [summary, export, *super().get_urls()]

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
                "title": _("Usage totals"),
                "form": form,
                "rows": rows,
                "total": total,
                "window": window,
                "rounded": rounded,
                "group_label": group_label,
            },
        )


class UsageSummaryForm(forms.Form):
    GROUPS = [
        ("user", _("user")),
        ("team", _("team")),
        ("token", _("token")),
        ("model", _("model")),
        ("channel", _("channel")),
    ]

    group_by = forms.ChoiceField(label=_("group by"), choices=GROUPS)
    since = forms.DateTimeField(label=_("since"), required=False, help_text=_("UTC"))
    until = forms.DateTimeField(label=_("until"), required=False, help_text=_("UTC"))

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group_by"].choices = choices

    def clean_since(self) -> datetime | None:
        return _utc(self.cleaned_data["since"])

    def clean_until(self) -> datetime | None:
        return _utc(self.cleaned_data["until"])


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


# Explorer parameters the rollups can answer, as history.summary's filters.
_TOTAL_FILTERS = {
    "user__id__exact": "user_id",
    "user": "user_id",
    "token__id__exact": "token_id",
    "team__id__exact": "team_id",
    "channel__id__exact": "channel_id",
    "model": "model",
}
# Parameters that change only which page or order is shown.
_NOT_FILTERS = ("p", "o", "_changelist_filters")


def explorer_totals(request: HttpRequest, cl: Any) -> dict[str, Any]:
    """Totals of the explorer's window and filters, from the function that
    answers /api/usage/summary/ (history.summary, on the rollups). Filters
    the rollups do not keep (outcome, stream, search…) are named in
    ``ignored``: the totals do not narrow by them."""
    params = dict(cl.params)
    since = window_bound(params.pop("since", None) or params.pop("created_at__gte", None))
    until = window_bound(params.pop("until", None) or params.pop("created_at__lt", None))
    params.pop("created_at__gte", None), params.pop("created_at__lt", None)
    filters: dict[str, Any] = {}
    ignored = []
    for name, value in params.items():
        if name in _NOT_FILTERS:
            continue
        column = _TOTAL_FILTERS.get(name)
        if column is None or not value:
            ignored.append(name)
            continue
        filters[column] = value if column == "model" else _int_or_none(value)
    if not is_operator(request):
        team_id = managed_team_id(request)
        filters = scoped(filters, {"team_id": team_id}) if team_id is not None else {"pk__in": []}
    found = history.summary("model", since=since, until=until, filters=filters)
    return {
        **found.total,
        "cost_usd": to_usd(found.total["cost"]),
        "since": found.since,
        "until": found.until,
        "ignored": ignored,
    }


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        raise IncorrectLookupParameters(value) from None
