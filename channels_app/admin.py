"""The operators' admin for channels and their key pools.

Provider keys are write-only here: pasted into a textarea that never echoes
them back, then shown only as their masked hint. Operators only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters

from channels_app import probe, services
from channels_app.models import Channel, ChannelKey, DisablePhrase, KeyEvent, Notification
from core import groups
from core.admin import (
    LiveFilter,
    OperatorOnlyAdmin,
    ReadOnlyAdminMixin,
    SoftDeleteAdminMixin,
    StringListField,
    is_operator,
)
from relay.providers import has_adapter, no_adapter_message

_ERROR_PREVIEW = 80


def _short_error(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_PREVIEW else text[: _ERROR_PREVIEW - 1] + "…"


def _balance(obj: ChannelKey) -> str:
    if obj.balance is None:
        return "—"
    return f"{obj.balance.normalize():f} {obj.balance_currency}".strip()


def _actor_reason(request: HttpRequest) -> str:
    # Recorded on the key event: kept in English, like the upstream's words.
    return f"set by {request.user.get_username()}"


class PastedKeysWidget(forms.Textarea):
    """Like a password input: whatever was typed is never rendered back, so a
    form redisplayed after an error holds no plaintext key."""

    def format_value(self, value: Any) -> None:
        return None


class ChannelForm(forms.ModelForm):
    models = StringListField(help_text=_("Model names this channel serves, one per line."))
    groups = StringListField(help_text=_("Names of the groups allowed to use it, one per line."))
    new_keys = forms.CharField(
        label=_("Add keys"),
        required=False,
        strip=False,
        widget=PastedKeysWidget(attrs={"rows": 4, "cols": 60, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "Paste provider keys, one per line. Keys already in this channel are skipped. "
            "Keys are stored encrypted and shown only masked; if the form has errors, paste them again."
        ),
    )

    class Meta:
        model = Channel
        fields = (
            "name",
            "type",
            "base_url",
            "status",
            "models",
            "model_mapping",
            "groups",
            "priority",
            "weight",
            "test_model",
            "include_usage",
            "proxy_url",
            "config",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "probe_interval",
            "recovery_probe_interval",
            "min_balance",
        )

    # Left blank (or absent from an older form), an interval keeps its default.
    _INTERVALS = ("probe_interval", "recovery_probe_interval")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self._INTERVALS:
            self.fields[name].required = False

    def _interval(self, name: str) -> int:
        value = self.cleaned_data.get(name)
        return Channel._meta.get_field(name).default if value is None else value

    def clean_probe_interval(self) -> int:
        return self._interval("probe_interval")

    def clean_recovery_probe_interval(self) -> int:
        return self._interval("recovery_probe_interval")

    def clean_groups(self) -> list[str]:
        names: list[str] = self.cleaned_data["groups"]
        unknown = groups.unknown(names)
        if unknown:
            raise forms.ValidationError(gettext("Unknown group(s): %(names)s.") % {"names": ", ".join(sorted(unknown))})
        return names

    def clean_new_keys(self) -> list[str]:
        return services.clean_key_lines([self.cleaned_data.get("new_keys") or ""])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        channel_type = cleaned.get("type")
        changing = self.instance.pk is None or "type" in self.changed_data
        enabled = cleaned.get("status") == Channel.Status.ENABLED
        if channel_type and (changing or enabled) and not has_adapter(channel_type):
            self.add_error("type", no_adapter_message(channel_type))
        return cleaned


class ChannelKeyInline(admin.TabularInline):
    """The channel's live keys, masked; new keys come in through ``new_keys``."""

    model = ChannelKey
    extra = 0
    show_change_link = True
    fields = (
        "hint",
        "state",
        "state_reason",
        "cooldown_until",
        "last_used_at",
        "last_success_at",
        "last_error_short",
        "latency_ms",
        "last_probed_at",
        "balance_shown",
        "rpm_limit",
        "tpm_limit",
    )
    readonly_fields = tuple(f for f in fields if f not in ("rpm_limit", "tpm_limit"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChannelKey]:
        return super().get_queryset(request).live()

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)

        class KeyForm(formset.form):  # type: ignore[name-defined]
            def hand_clean_DELETE(self) -> None:
                # Django refuses to delete a row that usage protects; a used key
                # is hidden instead (save_formset → services.delete_key).
                pass

        formset.form = KeyForm
        return formset

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    @admin.display(description=_("last error"))
    def last_error_short(self, obj: ChannelKey) -> str:
        return _short_error(obj.last_error)

    @admin.display(description=_("balance"))
    def balance_shown(self, obj: ChannelKey) -> str:
        return _balance(obj)


@admin.register(Channel)
class ChannelAdmin(SoftDeleteAdminMixin, OperatorOnlyAdmin):
    form = ChannelForm
    inlines = (ChannelKeyInline,)
    soft_delete = staticmethod(services.delete_channel)
    list_display = ("name", "type", "status", "priority", "weight", "models_short", "groups_short", "keys_health")
    list_filter = ("type", "status", LiveFilter)
    search_fields = ("name",)
    actions = ["enable", "disable", "test_now", "refresh_balances"]
    readonly_fields = ("created_at", "updated_at", "deleted_at")
    fieldsets = (
        (None, {"fields": ("name", "type", "base_url", "status")}),
        (_("Routing"), {"fields": ("models", "model_mapping", "groups", "priority", "weight", "test_model")}),
        (_("Keys"), {"fields": ("new_keys",)}),
        (
            _("Connection"),
            {
                "fields": (
                    "include_usage",
                    "proxy_url",
                    "config",
                    "connect_timeout",
                    "first_byte_timeout",
                    "idle_timeout",
                )
            },
        ),
        (_("Health checks"), {"fields": ("probe_interval", "recovery_probe_interval", "min_balance")}),
        (_("History"), {"fields": ("created_at", "updated_at", "deleted_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        live = Q(keys__deleted_at__isnull=True)
        return (
            super()
            .get_queryset(request)
            .annotate(
                total_keys=Count("keys", filter=live),
                healthy_keys=Count("keys", filter=live & Q(keys__state=ChannelKey.State.ACTIVE)),
            )
        )

    # Pasted keys must not reach error reports either.
    @method_decorator(sensitive_post_parameters("new_keys"))
    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Channel, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        pasted: list[str] = form.cleaned_data.get("new_keys") or []
        if pasted:
            added = services.add_keys(obj, pasted)
            skipped = len(pasted) - len(added)
            messages.success(
                request,
                gettext("Added %(added)d key(s); skipped %(skipped)d already in this channel.")
                % {"added": len(added), "skipped": skipped},
            )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not ChannelKey:
            return super().save_formset(request, form, formset, change)
        for key in formset.save(commit=False):
            key.save()
        # A key with usage is hidden, not deleted, so history keeps pointing at it.
        for key in formset.deleted_objects:
            services.delete_key(key)
        return None

    @admin.display(description=_("models"))
    def models_short(self, obj: Channel) -> str:
        shown = ", ".join(obj.models[:3])
        return f"{shown} +{len(obj.models) - 3}" if len(obj.models) > 3 else shown

    @admin.display(description=_("groups"))
    def groups_short(self, obj: Channel) -> str:
        return ", ".join(obj.groups)

    @admin.display(description=_("healthy / keys"), ordering="healthy_keys")
    def keys_health(self, obj: Channel) -> str:
        return format_html(
            '<a href="{}?channel__id__exact={}">{} / {}</a>',
            reverse("admin:channels_app_channelkey_changelist"),
            obj.pk,
            obj.healthy_keys,  # type: ignore[attr-defined]
            obj.total_keys,  # type: ignore[attr-defined]
        )

    @admin.action(description=_("Enable"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        refused = sorted({t for t in queryset.values_list("type", flat=True) if not has_adapter(t)})
        for channel_type in refused:
            messages.error(request, no_adapter_message(channel_type))
        routable = queryset.exclude(type__in=refused)
        changed = services.set_channel_status(routable.values_list("pk", flat=True), Channel.Status.ENABLED)
        messages.success(request, gettext("Enabled %(count)d channel(s).") % {"count": changed})

    @admin.action(description=_("Disable"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        changed = services.set_channel_status(queryset.values_list("pk", flat=True), Channel.Status.DISABLED)
        messages.success(request, gettext("Disabled %(count)d channel(s).") % {"count": changed})

    @admin.action(description=_("Probe now (every key, 1-token chat)"))
    def test_now(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        results = probe.probe_keys(channel_ids=list(queryset.values_list("pk", flat=True)))
        ok = sum(r.ok for r in results)
        self.message_user(
            request,
            gettext("Probed %(count)d key(s): %(ok)d answered, %(failed)d failed.")
            % {"count": len(results), "ok": ok, "failed": len(results) - ok},
        )

    @admin.action(description=_("Refresh provider balances now"))
    def refresh_balances(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        readings = [r for channel in queryset for r in services.refresh_balances(channel_id=channel.pk)]
        read = sum(r.balance is not None for r in readings)
        self.message_user(
            request,
            gettext("Read %(read)d balance(s); %(failed)d failed (types without a balance API are skipped).")
            % {"read": read, "failed": len(readings) - read},
        )


@admin.register(ChannelKey)
class ChannelKeyAdmin(SoftDeleteAdminMixin, OperatorOnlyAdmin):
    soft_delete = staticmethod(services.delete_key)
    list_display = (
        "id",
        "channel",
        "hint",
        "state",
        "state_reason",
        "cooldown_until",
        "last_used_at",
        "last_success_at",
        "last_error_short",
        "latency_ms",
        "balance_shown",
    )
    list_select_related = ("channel",)
    list_filter = ("state", "channel__type", LiveFilter)
    search_fields = ("channel__name", "hint")
    actions = ["enable", "disable", "test_now"]
    fieldsets = (
        (None, {"fields": ("channel", "hint", "state", "state_reason", "state_changed_at", "cooldown_until")}),
        (_("Limits (empty: unlimited)"), {"fields": ("rpm_limit", "tpm_limit")}),
        (
            _("Health"),
            {
                "fields": (
                    "last_used_at",
                    "last_success_at",
                    "last_error",
                    "last_error_at",
                    "latency_ms",
                    "last_probed_at",
                    "balance_shown",
                    "balance_updated_at",
                )
            },
        ),
        (_("History"), {"fields": ("created_at", "deleted_at", "recent_events")}),
    )
    readonly_fields = (
        "recent_events",
        "channel",
        "hint",
        "state_reason",
        "state_changed_at",
        "cooldown_until",
        "last_used_at",
        "last_success_at",
        "last_error",
        "last_error_at",
        "latency_ms",
        "last_probed_at",
        "balance_shown",
        "balance_updated_at",
        "created_at",
        "deleted_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are pasted into their channel

    def save_model(self, request: HttpRequest, obj: ChannelKey, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if "state" in form.changed_data:
            services.set_key_state(obj, obj.state, _actor_reason(request))

    @admin.display(description=_("last error"))
    def last_error_short(self, obj: ChannelKey) -> str:
        return _short_error(obj.last_error)

    @admin.display(description=_("balance"), ordering="balance")
    def balance_shown(self, obj: ChannelKey) -> str:
        return _balance(obj)

    @admin.action(description=_("Enable"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[ChannelKey]) -> None:
        changed = self._set_state(request, queryset, ChannelKey.State.ACTIVE)
        messages.success(request, gettext("Enabled %(count)d key(s).") % {"count": changed})

    @admin.action(description=_("Disable"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[ChannelKey]) -> None:
        changed = self._set_state(request, queryset, ChannelKey.State.MANUAL_DISABLED)
        messages.success(request, gettext("Disabled %(count)d key(s).") % {"count": changed})

    @admin.display(description=_("Recent transitions"))
    def recent_events(self, obj: ChannelKey) -> str:
        events = obj.events.all()[:20]
        if not events:
            return "—"
        return format_html_join(
            "",
            "<div>{} · {} → {} · {} ({}) {}</div>",
            (
                (
                    e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    e.from_state,
                    e.to_state,
                    e.reason,
                    e.source,
                    _short_error(e.message),
                )
                for e in events
            ),
        )

    @admin.action(description=_("Test now (1-token chat with the channel's test model)"))
    def test_now(self, request: HttpRequest, queryset: QuerySet[ChannelKey]) -> None:
        results = probe.probe_keys(key_ids=list(queryset.values_list("pk", flat=True)))
        ok = sum(r.ok for r in results)
        failed = [
            gettext("key %(id)s: %(status)s %(error)s")
            % {"id": r.key_id, "status": r.http_status or "-", "error": r.error[:120]}
            for r in results
            if not r.ok
        ]
        self.message_user(
            request,
            gettext("%(ok)d of %(count)d key(s) answered.") % {"ok": ok, "count": len(results)}
            + (" " + "; ".join(failed) if failed else ""),
        )

    def _set_state(self, request: HttpRequest, queryset: QuerySet[ChannelKey], state: str) -> int:
        reason = _actor_reason(request)
        changed = 0
        for key in queryset.exclude(state=state):
            services.set_key_state(key, state, reason)
            changed += 1
        return changed


@admin.register(KeyEvent)
class KeyEventAdmin(ReadOnlyAdminMixin, OperatorOnlyAdmin):
    """Every key transition with its reason and the upstream's (masked) words."""

    list_display = ("created_at", "key", "from_state", "to_state", "reason", "source")
    list_filter = ("to_state", "source", "reason")
    list_select_related = ("key",)
    raw_id_fields = ("key",)
    search_fields = ("message", "reason")


@admin.register(DisablePhrase)
class DisablePhraseAdmin(OperatorOnlyAdmin):
    """Extra upstream error phrases that disable a key (beside the built-in rules)."""

    list_display = ("phrase", "created_at")
    search_fields = ("phrase",)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, OperatorOnlyAdmin):
    """The last notification per subject and kind, and how many were held back since."""

    list_display = ("last_sent_at", "kind", "subject", "sent_count", "suppressed_count", "delivery")
    list_filter = ("kind",)
    search_fields = ("subject", "last_text")

    @admin.display(description=_("delivery"))
    def delivery(self, obj: Notification) -> str:
        return obj.last_error or "ok"
