"""The admin's dashboard: requests, tokens, spend and error rate over time by
model, channel, team or user, read from the usage rollups
(billing.history.series, never raw usage rows); the top spenders
(billing.history.summary, the function behind /api/usage/summary/); and, for
operators, the key pool as a health grid. Team admins see their team's usage
only, and no channel or key.

It lives in oneproxy/ because it reads both apps; neither app imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing import budgets, history
from billing.admin.shared import budget_text
from billing.models import User
from billing.money import to_usd
from channels_app.models import ChannelKey
from relay.errors import mask_secrets


@dataclass(frozen=True)
class Range:
    label: Any
    step: str  # what history.series reads: "hour" or "day"
    buckets: int  # how many points of ``unit`` the chart shows
    unit: str  # "hour", "day" or "month"


RANGES = {
    "hour": Range(gettext_lazy("48 hours, by hour"), "hour", 48, "hour"),
    "day": Range(gettext_lazy("30 days, by day"), "day", 30, "day"),
    "month": Range(gettext_lazy("12 months, by month"), "day", 12, "month"),
}
BY = {
    "model": gettext_lazy("model"),
    "channel": gettext_lazy("channel"),
    "team": gettext_lazy("team"),
    "user": gettext_lazy("user"),
}
# Channels are operators' business; a team admin's usage is one team's.
TEAM_ADMIN_BY = ("model", "user")
# Groups drawn one by one; the rest are summed as "other".
TOP_GROUPS = 8
TOP_SPENDERS = 10
# State → the grid's colour class and legend, in the order of the legend.
KEY_STATES = (
    (ChannelKey.State.ACTIVE, "active"),
    (ChannelKey.State.COOLING, "cooling"),
    (ChannelKey.State.AUTO_DISABLED, "auto-disabled"),
    (ChannelKey.State.MANUAL_DISABLED, "manual-disabled"),
)


def view(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    if user.is_operator:
        scope: dict[str, Any] = {}
        choices = tuple(BY)
    elif user.is_team_admin and user.team_id is not None:
        scope = {"team_id": user.team_id}
        choices = TEAM_ADMIN_BY
    else:
        raise PermissionDenied
    span = request.GET.get("range", "hour")
    span = span if span in RANGES else "hour"
    by = request.GET.get("by", "model")
    by = by if by in choices else "model"
    now = timezone.now()
    charts = chart_data(RANGES[span], by, scope, now)
    since, until = charts.pop("since"), charts.pop("until")
    spenders = history.summary("user", since=since, until=until, filters=scope)
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "ranges": [(key, r.label) for key, r in RANGES.items()],
        "range": span,
        "by_choices": [(key, BY[key]) for key in choices],
        "by": by,
        "charts": charts,
        "since": since,
        "until": until,
        "totals": {**spenders.total, "cost_usd": to_usd(spenders.total["cost"])},
        "spenders": [
            {**row, "cost_usd": to_usd(row["cost"]), "url": _usage_url(row["key"], since)}
            for row in spenders.results[:TOP_SPENDERS]
        ],
        "team": user.team if not user.is_operator else None,
        "team_budget": budget_text(budgets.budget_status(user.team, now)) if user.team and not user.is_operator else "",
        "keys": key_grid() if user.is_operator else None,
        "key_states": [(css, ChannelKey.State(state).label) for state, css in KEY_STATES],
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


def _usage_url(user_id: int | None, since: datetime) -> str:
    if user_id is None:
        return ""
    return f"{reverse('admin:billing_usagelog_changelist')}?user__id__exact={user_id}&since={since:%Y-%m-%d %H:%M}"


def chart_data(span: Range, by: str, scope: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Labels and, per group (the TOP_GROUPS biggest by cost, then requests,
    and "other"), requests, tokens, spend (USD) and error rate per point."""
    starts = _bucket_starts(span, now)
    since, until = starts[0], _next(starts[-1], span.unit)
    points = history.series(since=since, until=until, step=span.step, by=by, filters=scope)
    index = {start: i for i, start in enumerate(starts)}
    width = len(starts)
    groups: dict[Any, dict[str, Any]] = {}
    for point in points:
        start = _floor(point["start"], span.unit)
        i = index.get(start)
        if i is None:
            continue
        group = groups.get(point["key"])
        if group is None:
            group = groups[point["key"]] = {
                "key": point["key"],
                "name": _group_name(by, point["key"], point["name"]),
                **{m: [0] * width for m in ("requests", "errors", "tokens", "cost")},
            }
        group["requests"][i] += point["requests"]
        group["errors"][i] += point["errors"]
        group["tokens"][i] += point["prompt_tokens"] + point["completion_tokens"]
        group["cost"][i] += point["cost"]
    ranked = sorted(groups.values(), key=lambda g: (-sum(g["cost"]), -sum(g["requests"]), str(g["name"])))
    shown, rest = ranked[:TOP_GROUPS], ranked[TOP_GROUPS:]
    if rest:
        other: dict[str, Any] = {
            "key": None,
            "name": _("other"),
            **{m: [0] * width for m in ("requests", "errors", "tokens", "cost")},
        }
        for group in rest:
            for m in ("requests", "errors", "tokens", "cost"):
                other[m] = [a + b for a, b in zip(other[m], group[m], strict=True)]
        shown.append(other)
    series = [
        {
            "name": str(group["name"]),
            "requests": group["requests"],
            "tokens": group["tokens"],
            # Chart heights only: the money itself stays in integer µUSD and Decimal.
            "spend": [float(Decimal(c) / 1_000_000) for c in group["cost"]],
            "error_rate": [
                round(100 * e / r, 2) if r else None for e, r in zip(group["errors"], group["requests"], strict=True)
            ],
        }
        for group in shown
    ]
    return {
        "since": since,
        "until": until,
        "labels": [_label(start, span.unit) for start in starts],
        "series": series,
        "titles": {
            "requests": _("Requests"),
            "tokens": _("Tokens (prompt + completion)"),
            "spend": _("Spend (USD)"),
            "error_rate": _("Error rate (%)"),
        },
        "empty": _("No usage in this window."),
    }


def _group_name(by: str, key: Any, name: str | None) -> str:
    if key is None:
        return _("(none)")
    if name is None or by == "model":
        return str(name if name is not None else key)
    return f"{name} #{key}"


def _floor(t: datetime, unit: str) -> datetime:
    t = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return t
    t = t.replace(hour=0)
    return t if unit == "day" else t.replace(day=1)


def _next(t: datetime, unit: str) -> datetime:
    if unit == "hour":
        return t + timedelta(hours=1)
    if unit == "day":
        return t + timedelta(days=1)
    return (t.replace(day=28) + timedelta(days=4)).replace(day=1)


def _bucket_starts(span: Range, now: datetime) -> list[datetime]:
    """The last ``span.buckets`` hours, days or months, the current one last."""
    starts = [_floor(now, span.unit)]
    for _i in range(span.buckets - 1):
        previous = starts[0] - timedelta(seconds=1)
        starts.insert(0, _floor(previous, span.unit))
    return starts


def _label(start: datetime, unit: str) -> str:
    if unit == "hour":
        return f"{start:%m-%d %H:00}"
    if unit == "day":
        return f"{start:%m-%d}"
    return f"{start:%Y-%m}"


def key_grid() -> list[dict[str, Any]]:
    """Every live key of every live channel, for the health grid: the hint
    (never the key), state, reason and last error (masked again, in case)."""
    keys = (
        ChannelKey.objects.filter(deleted_at__isnull=True, channel__deleted_at__isnull=True)
        .select_related("channel")
        .order_by("channel__name", "channel_id", "id")
        .only("id", "hint", "state", "state_reason", "last_error", "last_error_at", "channel__name", "channel__status")
    )
    css = dict(KEY_STATES)
    grid: list[dict[str, Any]] = []
    for key in keys:
        if not grid or grid[-1]["channel_id"] != key.channel_id:
            grid.append({"channel_id": key.channel_id, "channel": key.channel.name, "keys": []})
        grid[-1]["keys"].append(
            {
                "id": key.pk,
                "hint": key.hint,
                "state": key.state,
                "state_label": ChannelKey.State(key.state).label,
                "css": css.get(ChannelKey.State(key.state), "active"),
                "reason": key.state_reason,
                "last_error": mask_secrets(key.last_error)[:300],
                "url": reverse("admin:channels_app_channelkey_change", args=[key.pk]),
            }
        )
    return grid
