"""The operators' admin for users, teams, tokens, prices, the ledger, usage,
redemption codes and reconciliation reports.

Access follows ``User.role``, never Django's model permissions: operators see
everything; a team admin sees only their own team's users, tokens and usage;
members are not staff and cannot log in. Secrets (relay keys, access tokens,
their hashes, password hashes) are never rendered.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group as PermissionGroup
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing import budgets, services
from billing.models import (
    Group,
    LedgerEntry,
    ModelPrice,
    ReconcileReport,
    RedemptionCode,
    Team,
    Token,
    UsageLog,
    User,
)
from billing.money import to_micro, to_usd
from core.admin import (
    LiveFilter,
    OperatorOnlyAdmin,
    ReadOnlyAdminMixin,
    SoftDeleteAdminMixin,
    StringListField,
    is_operator,
)
from relay.channel_types import CHOICES as CHANNEL_TYPE_CHOICES

# Admin access comes from User.role alone; Django's permission groups would be
# a second, contradicting source of truth.
if admin.site.is_registered(PermissionGroup):
    admin.site.unregister(PermissionGroup)


# -- who may see what --------------------------------------------------------


def managed_team_id(request: HttpRequest) -> int | None:
    """The team a team admin manages; None for everyone else, including a
    team admin without a team (who then sees nothing)."""
    user = request.user
    if user.is_active and getattr(user, "role", None) == User.Role.TEAM_ADMIN:
        return user.team_id  # type: ignore[union-attr]
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

    def clean(self, value: Any) -> int | None:  # type: ignore[override]
        amount = super().clean(value)
        return None if amount is None else to_micro(amount)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            typed = self.to_python(data)
        except forms.ValidationError:
            return True
        return (None if typed is None else to_micro(typed)) != initial


def budget_text(status: budgets.BudgetStatus) -> str:
    if status.budget is None:
        return f"no budget; {usd(status.spent)} spent this {status.period}"
    return (
        f"{usd(status.remaining)} of {usd(status.budget)} left this {status.period} "
        f"(resets {status.resets_at:%Y-%m-%d %H:%M} UTC)"
    )


def validate_subnet(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise forms.ValidationError(f"{value!r} is not an IP network (e.g. 10.0.0.0/8).") from None


# -- groups and teams ----------------------------------------------------------


@admin.register(Group)
class GroupAdmin(OperatorOnlyAdmin):
    list_display = ("name", "multiplier", "description", "user_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        return super().get_queryset(request).annotate(user_count=Count("users"))

    @admin.display(description="users", ordering="user_count")
    def user_count(self, obj: Group) -> int:
        return obj.user_count  # type: ignore[attr-defined]


@admin.register(Team)
class TeamAdmin(TeamScopedAdmin):
    list_display = ("name", "multiplier", "member_count", "budget_usd", "budget_period", "budget_left", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at", "budget_left")
    fields = ("name", "multiplier", "budget", "budget_period", "budget_left", "created_at")

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "budget":
            return UsdAmountField(
                label="Budget (USD)", required=False, min_value=Decimal(0), help_text="Per period. Empty: no budget."
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Team | None = None) -> Any:
        if self.has_change_permission(request, obj):
            return self.fields
        return tuple("budget_usd" if f == "budget" else f for f in self.fields)  # not the raw µUSD

    @admin.display(description="budget", ordering="budget")
    def budget_usd(self, obj: Team) -> str | None:
        return usd(obj.budget)

    @admin.display(description="this period")
    def budget_left(self, obj: Team) -> str:
        return budget_text(budgets.budget_status(obj, timezone.now())) if obj.pk else "—"

    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(pk=team_id)

    def in_team(self, obj: Team, team_id: int) -> bool:
        return obj.pk == team_id

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Team) -> int:
        return obj.member_count  # type: ignore[attr-defined]


# -- users ---------------------------------------------------------------------


class PasswordStatusWidget(auth_forms.ReadOnlyPasswordHashWidget):
    """Says whether a password is set; unlike Django's widget, shows no part of
    the hash or salt."""

    def get_context(self, name: str, value: Any, attrs: Any) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        has_password = bool(value) and not value.startswith("!")
        context["summary"] = [{"label": "Password set." if has_password else "No password set."}]
        return context


class UserChangeForm(auth_forms.UserChangeForm):
    password = auth_forms.ReadOnlyPasswordHashField(
        label="Password",
        widget=PasswordStatusWidget,
        help_text="Raw passwords are not stored, so there is no way to see the user’s password.",
    )

    class Meta(auth_forms.UserChangeForm.Meta):
        model = User


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta(auth_forms.AdminUserCreationForm.Meta):
        model = User
        fields = ("username",)


class AdjustBalanceForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        max_digits=18,
        decimal_places=6,
        help_text="Added to each balance; negative to take money away. Not zero.",
    )
    note = forms.CharField(max_length=255, help_text="Why; recorded on the ledger entry.")

    def clean_amount_usd(self) -> int:
        amount = to_micro(self.cleaned_data["amount_usd"])
        if amount == 0:
            raise forms.ValidationError("Must not be zero.")
        return amount

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError("Say why.")
        return note


_PASSWORD_FIELDS = ("username", "usable_password", "password1", "password2")


@admin.register(User)
class UserAdmin(TeamScopedAdmin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = ("username", "email", "role", "group", "team", "balance_usd", "is_active", "last_login")
    list_select_related = ("group", "team")
    list_filter = ("role", "is_active", "group", "team")
    search_fields = ("username", "email", "first_name", "last_name")
    ordering = ("username",)
    filter_horizontal = ()
    actions = ["rotate_access_token", "adjust_balance"]

    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "group", "team", "is_active", "access_token_prefix")}),
        ("Balance", {"fields": ("balance_usd", "budget", "budget_period", "budget_left")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": _PASSWORD_FIELDS}),
        ("Access", {"fields": ("email", "role", "group", "team")}),
    )
    # What a team admin may set; role and team are forced (see save_model).
    team_fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "team", "is_active", "access_token_prefix")}),
        ("Balance", {"fields": ("balance_usd", "budget_usd", "budget_period", "budget_left")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    team_add_fieldsets = ((None, {"classes": ("wide",), "fields": (*_PASSWORD_FIELDS, "email")}),)

    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(team_id=team_id).exclude(role=User.Role.OPERATOR)

    def in_team(self, obj: User, team_id: int) -> bool:
        return obj.team_id == team_id and obj.role != User.Role.OPERATOR

    def may_manage(self, request: HttpRequest, obj: User | None) -> bool:
        """Operators manage anyone; a team admin manages themself and the members
        of their team (not other team admins)."""
        if is_operator(request):
            return True
        team_id = managed_team_id(request)
        if team_id is None:
            return False
        if obj is None or obj.pk == request.user.pk:
            return True
        return obj.team_id == team_id and obj.role == User.Role.MEMBER

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request) or managed_team_id(request) is not None

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return self.may_manage(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> Any:
        operator = is_operator(request)
        if obj is None:
            return self.add_fieldsets if operator else self.team_add_fieldsets
        fieldsets = self.fieldsets if operator else self.team_fieldsets
        if not self.may_manage(request, obj):
            # A read-only page would print the raw `password` column (the hash).
            fieldsets = tuple(
                (name, {**opts, "fields": tuple("password_status" if f == "password" else f for f in opts["fields"])})
                for name, opts in fieldsets
            )
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> Any:
        fields = ["balance_usd", "access_token_prefix", "last_login", "date_joined", "password_status", "budget_left"]
        if not is_operator(request):
            # Budgets are set by operators; team admins see them.
            fields += ["role", "team", "budget_usd", "budget_period"]
        return fields

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "budget":
            return UsdAmountField(
                label="Budget (USD)", required=False, min_value=Decimal(0), help_text="Per period. Empty: no budget."
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # The group and team filters would list every group and team.
        return self.list_filter if is_operator(request) else ("role", "is_active")

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if not is_operator(request):
            if not change:
                obj.role = User.Role.MEMBER
            obj.team_id = managed_team_id(request)
        super().save_model(request, obj, form, change)
        if not change:
            token = services.issue_access_token(obj)
            self._show_access_token(request, obj, token)

    @admin.display(description="balance", ordering="balance")
    def balance_usd(self, obj: User) -> str | None:
        return usd(obj.balance)

    @admin.display(description="password")
    def password_status(self, obj: User) -> str:
        return "set" if obj.has_usable_password() else "not set"

    @admin.display(description="budget", ordering="budget")
    def budget_usd(self, obj: User) -> str | None:
        return usd(obj.budget)

    @admin.display(description="this period")
    def budget_left(self, obj: User) -> str:
        if not obj.pk:
            return "—"
        now = timezone.now()
        text = budget_text(budgets.budget_status(obj, now))
        if obj.team is not None:
            text += f"; team {obj.team}: {budget_text(budgets.budget_status(obj.team, now))}"
        return text

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)

    @admin.action(description="Adjust balance", permissions=["adjust"])
    def adjust_balance(self, request: HttpRequest, queryset: QuerySet[User]) -> TemplateResponse | None:
        """An intermediate page asks for the amount and the reason, then writes
        one adjustment ledger entry per selected user."""
        form = AdjustBalanceForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            amount, note = form.cleaned_data["amount_usd"], form.cleaned_data["note"]
            users = list(queryset.order_by("pk"))
            for user in users:
                services.adjust(user, amount, actor=request.user, note=note)  # type: ignore[arg-type]
                self.log_change(request, user, f"Adjusted the balance by {usd(amount)}: {note}")
            messages.success(request, f"Adjusted {len(users)} balance(s) by {usd(amount)}.")
            return None
        return TemplateResponse(
            request,
            "admin/billing/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Adjust balance",
                "intro": "Writes one adjustment entry on the ledger of each of these users. "
                "A negative amount takes money away and may leave a balance below zero.",
                "objects": [f"{u.username}: {usd(u.balance)}" for u in queryset.order_by("username")],
                "form": form,
                "hidden": [("action", "adjust_balance")]
                + [(helpers.ACTION_CHECKBOX_NAME, pk) for pk in queryset.values_list("pk", flat=True)],
                "submit_label": "Adjust",
            },
        )

    @admin.action(description="Rotate access token (shown once)", permissions=["change"])
    def rotate_access_token(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        skipped = 0
        for user in queryset:
            if not self.may_manage(request, user):
                skipped += 1
                continue
            token = services.issue_access_token(user)
            self.log_change(request, user, "Rotated the access token.")
            self._show_access_token(request, user, token)
        if skipped:
            messages.warning(request, f"Skipped {skipped} user(s) you may not manage.")

    def _show_access_token(self, request: HttpRequest, user: User, token: str) -> None:
        messages.success(
            request,
            format_html(
                "Access token for {}: <code>{}</code> — copy it now, it will not be shown again.",
                user.get_username(),
                token,
            ),
        )


# -- relay tokens --------------------------------------------------------------


class TokenForm(forms.ModelForm):
    quota_usd = forms.DecimalField(
        label="Quota (USD)",
        required=False,
        min_value=Decimal(0),
        max_digits=18,
        decimal_places=6,
        help_text="Spending cap in US dollars, e.g. 25.00. Empty: no cap.",
    )
    models = StringListField(help_text="Allowed models, one per line. Empty: all.")
    subnets = StringListField(
        item_validator=validate_subnet, help_text="Allowed client networks (CIDR), one per line. Empty: all."
    )

    class Meta:
        model = Token
        fields = ("user", "name", "status", "expires_at", "models", "subnets")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.quota is not None:
            self.initial.setdefault("quota_usd", to_usd(self.instance.quota))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        quota = cleaned.get("quota_usd")
        self.instance.quota = None if quota is None else to_micro(quota)
        return cleaned


_LIMITS = ("rpm_limit", "tpm_limit", "rpd_limit", "concurrency_limit")


@admin.register(Token)
class TokenAdmin(SoftDeleteAdminMixin, TeamScopedAdmin):
    form = TokenForm
    soft_delete = staticmethod(services.delete_token)
    list_display = (
        "name",
        "key_prefix",
        "user",
        "status",
        "quota_usd",
        "used_usd",
        "expires_at",
        "last_used_at",
        "created_at",
    )
    list_select_related = ("user",)
    list_filter = ("status", LiveFilter)
    search_fields = ("name", "key_prefix", "user__username")
    autocomplete_fields = ("user",)
    actions = ["enable", "disable"]

    add_fieldsets = (
        (None, {"fields": ("user", "name", "expires_at", "quota_usd")}),
        ("Restrictions", {"fields": ("models", "subnets")}),
        ("Rate limits (empty: unlimited)", {"fields": _LIMITS}),
    )
    fieldsets = (
        (None, {"fields": ("user", "name", "key_prefix", "status", "expires_at")}),
        ("Spending", {"fields": ("quota_usd", "used_usd")}),
        ("Restrictions", {"fields": ("models", "subnets")}),
        ("Rate limits (empty: unlimited)", {"fields": _LIMITS}),
        ("History", {"fields": ("created_at", "last_used_at", "deleted_at")}),
    )

    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(user__in=team_users(team_id))

    def in_team(self, obj: Token, team_id: int) -> bool:
        return obj.user.team_id == team_id and obj.user.role != User.Role.OPERATOR

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.may_see(request)

    def has_change_permission(self, request: HttpRequest, obj: Token | None = None) -> bool:
        return self.may_see(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Token | None = None) -> bool:
        return self.may_see(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Token | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Token | None = None) -> Any:
        if obj is None:
            return ()
        return ("user", "key_prefix", "used_usd", "created_at", "last_used_at", "deleted_at")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user" and not is_operator(request):
            team_id = managed_team_id(request)
            kwargs["queryset"] = team_users(team_id) if team_id is not None else User.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Token, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = services.create_token(
            user=obj.user,
            name=obj.name,
            quota=obj.quota,
            expires_at=obj.expires_at,
            models=obj.models,
            subnets=obj.subnets,
            **{limit: getattr(obj, limit) for limit in _LIMITS},
        )
        # The admin goes on with the form's instance (logging, redirect), so
        # make it the saved row.
        for field in Token._meta.concrete_fields:
            setattr(obj, field.attname, getattr(token, field.attname))
        obj._state.adding = False
        obj._state.db = token._state.db
        messages.success(
            request,
            format_html("Token key: <code>{}</code> — copy it now, it will not be shown again.", key),
        )

    @admin.display(description="quota", ordering="quota")
    def quota_usd(self, obj: Token) -> str | None:
        return usd(obj.quota)

    @admin.display(description="used", ordering="used")
    def used_usd(self, obj: Token) -> str | None:
        return usd(obj.used)

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        changed = self._set_status(queryset, Token.Status.ACTIVE)
        messages.success(request, f"Enabled {changed} token(s).")

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        changed = self._set_status(queryset, Token.Status.DISABLED)
        messages.success(request, f"Disabled {changed} token(s).")

    def _set_status(self, queryset: QuerySet[Token], status: str) -> int:
        changed = 0
        for token in queryset.exclude(status=status):
            token.status = status
            token.save(update_fields=["status"])  # post_save tells the relay
            changed += 1
        return changed


# -- prices, ledger, usage -------------------------------------------------------


class ModelPriceForm(forms.ModelForm):
    channel_type = forms.ChoiceField(
        choices=[("", "any"), *CHANNEL_TYPE_CHOICES],
        required=False,
        help_text="Price only for channels of this type; 'any' applies everywhere else.",
    )

    class Meta:
        model = ModelPrice
        fields = (
            "model", "channel_type", "input", "output", "cached_input", "audio", "per_request", "per_image",
            "source", "as_of",
        )  # fmt: skip


_PRICE_COLUMNS = {"input", "output", "cached_input", "audio", "per_request", "per_image"}


@admin.register(ModelPrice)
class ModelPriceAdmin(OperatorOnlyAdmin):
    form = ModelPriceForm
    list_display = (
        "model",
        "channel_type",
        "input",
        "output",
        "cached_input",
        "audio",
        "per_request",
        "per_image",
        "as_of",
        "updated_at",
    )
    list_editable = ("input", "output", "cached_input", "audio", "per_request", "per_image")
    list_filter = ("channel_type", "as_of")
    search_fields = ("model", "source")

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        # A price edited here is no longer the catalogue's: say so, unless the
        # operator recorded a new source with it.
        if change and _PRICE_COLUMNS & set(form.changed_data) and "source" not in form.changed_data:
            obj.source, obj.as_of = "", None
        super().save_model(request, obj, form, change)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, OperatorOnlyAdmin):
    list_display = ("created_at", "user", "kind", "amount_usd", "balance_after_usd", "actor", "note", "usage")
    list_select_related = ("user", "actor", "usage")
    list_filter = ("kind",)
    raw_id_fields = ("user", "actor", "usage")
    search_fields = ("user__username", "note")
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="amount", ordering="amount")
    def amount_usd(self, obj: LedgerEntry) -> str | None:
        return usd(obj.amount)

    @admin.display(description="balance after")
    def balance_after_usd(self, obj: LedgerEntry) -> str | None:
        return usd(obj.balance_after)


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

    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(user__team_id=team_id)

    def in_team(self, obj: UsageLog, team_id: int) -> bool:
        return obj.user.team_id == team_id

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
        if form.is_valid():
            usage = self.get_queryset(request)
            if form.cleaned_data["since"]:
                usage = usage.filter(created_at__gte=form.cleaned_data["since"])
            if form.cleaned_data["until"]:
                usage = usage.filter(created_at__lt=form.cleaned_data["until"])
            rows = [{**row, "cost_usd": to_usd(row["cost"])} for row in usage.summary(form.cleaned_data["group_by"])]
            total = usage.totals()
            total["cost_usd"] = to_usd(total["cost"])
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


# -- redemption codes ----------------------------------------------------------------


class RedemptionBatchForm(forms.Form):
    name = forms.CharField(max_length=128, help_text="Names the batch; filter and export by it.")
    count = forms.IntegerField(min_value=1, max_value=services.MAX_CODES_PER_BATCH)
    amount_usd = forms.DecimalField(
        label="Amount per code (USD)", min_value=Decimal("0.000001"), max_digits=18, decimal_places=6
    )
    expires_at = forms.DateTimeField(required=False, help_text="UTC, e.g. 2026-12-31 23:59. Empty: never.")

    def clean_expires_at(self) -> datetime | None:
        value = self.cleaned_data["expires_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return value


class RedemptionStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unused", "Unused"), ("redeemed", "Redeemed"), ("expired", "Expired")]

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
    title = "batch"
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
                "title": "Create a batch of redemption codes",
                "intro": "Each code credits its amount to the balance of the user who redeems it, once.",
                "form": form,
                "hidden": [],
                "submit_label": "Create",
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

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[RedemptionCode]) -> HttpResponse:
        return codes_csv(queryset, "redemption-codes.csv")

    @admin.display(description="amount", ordering="amount")
    def amount_usd(self, obj: RedemptionCode) -> str | None:
        return usd(obj.amount)

    @admin.display(description="status")
    def status(self, obj: RedemptionCode) -> str:
        return obj.status_at(timezone.now())


# -- reconciliation --------------------------------------------------------------------


@admin.register(ReconcileReport)
class ReconcileReportAdmin(ReadOnlyAdminMixin, OperatorOnlyAdmin):
    """What each billing.reconcile run found; written only by the task."""

    list_display = (
        "created_at",
        "is_clean",
        "users_checked",
        "drifted_users",
        "unbilled_usage",
        "mismatched_charges",
        "mirrors_checked",
        "stale_holds_released",
        "released_count",
        "service_mode",
    )
    list_filter = ("service_mode",)
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "service_mode",
        "users_checked",
        "drifted_users",
        "drift_table",
        "unbilled_usage",
        "mismatched_charges",
        "mirrors_checked",
        "stale_holds_released",
        "mirrors_pending",
        "released_table",
    )
    readonly_fields = fields

    @admin.display(description="clean", boolean=True)
    def is_clean(self, obj: ReconcileReport) -> bool:
        return obj.is_clean

    @admin.display(description="mirrors released")
    def released_count(self, obj: ReconcileReport) -> int:
        return len(obj.mirrors_released)

    @admin.display(description="drift (µUSD: balance column, ledger sum, balance − ledger; fixed to the ledger)")
    def drift_table(self, obj: ReconcileReport) -> str:
        return json.dumps(obj.drift, indent=1) if obj.drift else "none"

    @admin.display(description="stale holds released (µUSD: mirror, balance)")
    def released_table(self, obj: ReconcileReport) -> str:
        return json.dumps(obj.mirrors_released, indent=1) if obj.mirrors_released else "none"
