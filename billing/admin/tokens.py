"""Admin for relay tokens: the sk- key shown once at creation, caps and limits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing import services
from billing.admin.shared import (
    TeamScopedAdmin,
    managed_team_id,
    team_users,
    usd,
    validate_subnet,
)
from billing.models import (
    Token,
    User,
)
from billing.money import to_micro, to_usd
from core.admin import (
    LiveFilter,
    SoftDeleteAdminMixin,
    StringListField,
    is_operator,
)

# -- relay tokens --------------------------------------------------------------


class TokenForm(forms.ModelForm):
    quota_usd = forms.DecimalField(
        label=_("Quota (USD)"),
        required=False,
        min_value=Decimal(0),
        max_digits=18,
        decimal_places=6,
        help_text=_("Spending cap in US dollars, e.g. 25.00. Empty: no cap."),
    )
    models = StringListField(help_text=_("Allowed models, one per line. Empty: all."))
    subnets = StringListField(
        item_validator=validate_subnet, help_text=_("Allowed client networks (CIDR), one per line. Empty: all.")
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
        (_("Restrictions"), {"fields": ("models", "subnets")}),
        (_("Rate limits (empty: unlimited)"), {"fields": _LIMITS}),
    )
    fieldsets = (
        (None, {"fields": ("user", "name", "key_prefix", "status", "expires_at")}),
        (_("Spending"), {"fields": ("quota_usd", "used_usd")}),
        (_("Restrictions"), {"fields": ("models", "subnets")}),
        (_("Rate limits (empty: unlimited)"), {"fields": _LIMITS}),
        (_("History"), {"fields": ("created_at", "last_used_at", "deleted_at")}),
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
            format_html(gettext("Token key: <code>{}</code> — copy it now, it will not be shown again."), key),
        )

    @admin.display(description=_("quota"), ordering="quota")
    def quota_usd(self, obj: Token) -> str | None:
        return usd(obj.quota)

    @admin.display(description=_("used"), ordering="used")
    def used_usd(self, obj: Token) -> str | None:
        return usd(obj.used)

    @admin.action(description=_("Enable"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        changed = self._set_status(queryset, Token.Status.ACTIVE)
        messages.success(request, gettext("Enabled %(count)d token(s).") % {"count": changed})

    @admin.action(description=_("Disable"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        changed = self._set_status(queryset, Token.Status.DISABLED)
        messages.success(request, gettext("Disabled %(count)d token(s).") % {"count": changed})

    def _set_status(self, queryset: QuerySet[Token], status: str) -> int:
        changed = 0
        for token in queryset.exclude(status=status):
            token.status = status
            token.save(update_fields=["status"])  # post_save tells the relay
            changed += 1
        return changed
