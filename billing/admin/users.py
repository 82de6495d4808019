"""Admin for groups, teams and users (with balance adjustments and access tokens)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing import budgets, services
from billing.admin.shared import (
    TeamScopedAdmin,
    UsdAmountField,
    budget_text,
    managed_team_id,
    usd,
)
from billing.models import (
    Group,
    Team,
    User,
)
from billing.money import to_micro
from core.admin import (
    OperatorOnlyAdmin,
    is_operator,
)

# -- groups and teams ----------------------------------------------------------


@admin.register(Group)
class GroupAdmin(OperatorOnlyAdmin):
    list_display = ("name", "multiplier", "description", "user_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        return super().get_queryset(request).annotate(user_count=Count("users"))

    @admin.display(description=_("users"), ordering="user_count")
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
                label=_("Budget (USD)"),
                required=False,
                min_value=Decimal(0),
                help_text=_("Per period. Empty: no budget."),
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Team | None = None) -> Any:
        if self.has_change_permission(request, obj):
            return self.fields
        return tuple("budget_usd" if f == "budget" else f for f in self.fields)  # not the raw µUSD

    @admin.display(description=_("budget"), ordering="budget")
    def budget_usd(self, obj: Team) -> str | None:
        return usd(obj.budget)

    @admin.display(description=_("this period"))
    def budget_left(self, obj: Team) -> str:
        return budget_text(budgets.budget_status(obj, timezone.now())) if obj.pk else "—"

    def scope_to_team(self, queryset: QuerySet, team_id: int) -> QuerySet:
        return queryset.filter(pk=team_id)

    def in_team(self, obj: Team, team_id: int) -> bool:
        return obj.pk == team_id

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description=_("members"), ordering="member_count")
    def member_count(self, obj: Team) -> int:
        return obj.member_count  # type: ignore[attr-defined]


# -- users ---------------------------------------------------------------------


class PasswordStatusWidget(auth_forms.ReadOnlyPasswordHashWidget):
    """Says whether a password is set; unlike Django's widget, shows no part of
    the hash or salt."""

    def get_context(self, name: str, value: Any, attrs: Any) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        has_password = bool(value) and not value.startswith("!")
        context["summary"] = [{"label": _("Password set.") if has_password else _("No password set.")}]
        return context


class UserChangeForm(auth_forms.UserChangeForm):
    password = auth_forms.ReadOnlyPasswordHashField(
        label=_("Password"),
        widget=PasswordStatusWidget,
        help_text=_("Raw passwords are not stored, so there is no way to see the user’s password."),
    )

    class Meta(auth_forms.UserChangeForm.Meta):
        model = User


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta(auth_forms.AdminUserCreationForm.Meta):
        model = User
        fields = ("username",)


class AdjustBalanceForm(forms.Form):
    amount_usd = forms.DecimalField(
        label=_("Amount (USD)"),
        max_digits=18,
        decimal_places=6,
        help_text=_("Added to each balance; negative to take money away. Not zero."),
    )
    note = forms.CharField(label=_("Note"), max_length=255, help_text=_("Why; recorded on the ledger entry."))

    def clean_amount_usd(self) -> int:
        amount = to_micro(self.cleaned_data["amount_usd"])
        if amount == 0:
            raise forms.ValidationError(_("Must not be zero."))
        return amount

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(_("Say why."))
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
        (_("Personal info"), {"fields": ("first_name", "last_name", "email", "language")}),
        (_("Access"), {"fields": ("role", "group", "team", "is_active", "access_token_prefix")}),
        (_("Balance"), {"fields": ("balance_usd", "budget", "budget_period", "budget_left")}),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": _PASSWORD_FIELDS}),
        (_("Access"), {"fields": ("email", "role", "group", "team")}),
    )
    # What a team admin may set; role and team are forced (see save_model).
    team_fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Personal info"), {"fields": ("first_name", "last_name", "email", "language")}),
        (_("Access"), {"fields": ("role", "team", "is_active", "access_token_prefix")}),
        (_("Balance"), {"fields": ("balance_usd", "budget_usd", "budget_period", "budget_left")}),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
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

    def sets_budget(self, request: HttpRequest, obj: User | None) -> bool:
        """Operators set anyone's budget; a team admin their members' (not
        their own, nor another team admin's: the team's budget caps them)."""
        if is_operator(request):
            return True
        return obj is not None and obj.pk != request.user.pk and self.may_manage(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> Any:
        operator = is_operator(request)
        if obj is None:
            return self.add_fieldsets if operator else self.team_add_fieldsets
        fieldsets = self.fieldsets if operator else self.team_fieldsets
        if not operator and self.sets_budget(request, obj):
            fieldsets = tuple(
                (name, {**opts, "fields": tuple("budget" if f == "budget_usd" else f for f in opts["fields"])})
                for name, opts in fieldsets
            )
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
            fields += ["role", "team", "budget_usd"]
            if not self.sets_budget(request, obj):
                fields.append("budget_period")
        return fields

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "budget":
            return UsdAmountField(
                label=_("Budget (USD)"),
                required=False,
                min_value=Decimal(0),
                help_text=_("Per period. Empty: no budget."),
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

    @admin.display(description=_("balance"), ordering="balance")
    def balance_usd(self, obj: User) -> str | None:
        return usd(obj.balance)

    @admin.display(description=_("password"))
    def password_status(self, obj: User) -> str:
        return "set" if obj.has_usable_password() else "not set"

    @admin.display(description=_("budget"), ordering="budget")
    def budget_usd(self, obj: User) -> str | None:
        return usd(obj.budget)

    @admin.display(description=_("this period"))
    def budget_left(self, obj: User) -> str:
        if not obj.pk:
            return "—"
        now = timezone.now()
        text = budget_text(budgets.budget_status(obj, now))
        if obj.team is not None:
            text += gettext("; team %(team)s: %(budget)s") % {
                "team": obj.team,
                "budget": budget_text(budgets.budget_status(obj.team, now)),
            }
        return text

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)

    @admin.action(description=_("Adjust balance"), permissions=["adjust"])
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
            messages.success(
                request,
                gettext("Adjusted %(count)d balance(s) by %(amount)s.") % {"count": len(users), "amount": usd(amount)},
            )
            return None
        return TemplateResponse(
            request,
            "admin/billing/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": _("Adjust balance"),
                "intro": _(
                    "Writes one adjustment entry on the ledger of each of these users. "
                    "A negative amount takes money away and may leave a balance below zero."
                ),
                "objects": [f"{u.username}: {usd(u.balance)}" for u in queryset.order_by("username")],
                "form": form,
                "hidden": [("action", "adjust_balance")]
                + [(helpers.ACTION_CHECKBOX_NAME, pk) for pk in queryset.values_list("pk", flat=True)],
                "submit_label": _("Adjust"),
            },
        )

    @admin.action(description=_("Rotate access token (shown once)"), permissions=["change"])
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
            messages.warning(request, gettext("Skipped %(count)d user(s) you may not manage.") % {"count": skipped})

    def _show_access_token(self, request: HttpRequest, user: User, token: str) -> None:
        messages.success(
            request,
            format_html(
                gettext("Access token for {}: <code>{}</code> — copy it now, it will not be shown again."),
                user.get_username(),
                token,
            ),
        )
