"""What the billing admin pages share: team scoping, USD display and fields, validators."""

from __future__ import annotations

import ipaddress
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group as PermissionGroup
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing import budgets
from billing.models import (
    User,
)
from billing.money import to_micro, to_usd
from core.admin import (
    OperatorOnlyAdmin,
    is_operator,
)

# a second, contradicting source of truth.
if admin.site.is_registered(PermissionGroup):
    admin.site.unregister(PermissionGroup)


# -- who may see what --------------------------------------------------------


def managed_team_id(request: HttpRequest) -> int | None:
    """The team a team admin manages; None for everyone else, including a
    team admin without a team (who then sees nothing)."""
    user = request.user
    if user.is_active and getattr(user, "role", None) == User.Role.TEAM_ADMIN:
        return user.team_id
    return None


def team_users(team_id: int) -> QuerySet[User]:
    # Operators who happen to be in a team stay out of a team admin's reach.
    return User.objects.filter(team_id=team_id).exclude(role=User.Role.OPERATOR)


class TeamScopedAdmin(OperatorOnlyAdmin):
    """Operators see every row; a team admin sees the rows of their team.
    Writes stay operators' (OperatorOnlyAdmin); subclasses open them to team admins."""

    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        raise NotImplementedError

    def in_team(self, obj: Any, team_id: int) -> bool:
        raise NotImplementedError

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if is_operator(request):
            return queryset
        team_id = managed_team_id(request)
        if team_id is None:
            return queryset.none()
        return self.scope_to_team(queryset, team_id)

    def may_see(self, request: HttpRequest, obj: Any = None) -> bool:
        if is_operator(request):
            return True
        team_id = managed_team_id(request)
        return team_id is not None and (obj is None or self.in_team(obj, team_id))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.may_see(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.may_see(request, obj)


def usd(micro: int | None) -> str | None:
    value = to_usd(micro)
    return None if value is None else f"${value}"


# -- form fields ---------------------------------------------------------------


class UsdAmountField(forms.DecimalField):
    """A µUSD column typed and shown in USD (e.g. a budget of "25.00")."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        # The model's integer µUSD on first display; the typed text after an error.
        if isinstance(value, int) and not isinstance(value, bool):
            return to_usd(value)
        return value

    def clean(self, value: Any) -> int | None:
        amount = super().clean(value)
        return None if amount is None else to_micro(amount)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            typed = self.to_python(data)
        except forms.ValidationError:
            return True
        return (None if typed is None else to_micro(typed)) != initial


# "… left this day / week / month"
PERIOD_WORDS: dict[str, Any] = {"day": _("day"), "week": _("week"), "month": _("month")}


def budget_text(status: budgets.BudgetStatus) -> str:
    if status.budget is None:
        return gettext("no budget; %(spent)s spent this %(period)s") % {
            "spent": usd(status.spent),
            "period": PERIOD_WORDS[status.period],
        }
    return gettext("%(left)s of %(budget)s left this %(period)s (resets %(at)s UTC)") % {
        "left": usd(status.remaining),
        "budget": usd(status.budget),
        "period": PERIOD_WORDS[status.period],
        "at": f"{status.resets_at:%Y-%m-%d %H:%M}",
    }


def validate_subnet(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise forms.ValidationError(
            gettext("%(value)r is not an IP network (e.g. 10.0.0.0/8).") % {"value": value}
        ) from None
