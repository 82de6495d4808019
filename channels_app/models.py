"""Channels (an upstream account at a provider) and their key pools."""

from __future__ import annotations

from django.core.validators import MinValueValidator

# Aliased: `models` is also a field name (the models a channel or token allows).
from django.db import models as dj
from django.utils.translation import gettext_lazy as _

from channels_app import crypto
from channels_app.querysets import ChannelKeyQuerySet, ChannelQuerySet
from relay.channel_types import CHANNEL_TYPES, CHOICES


def default_groups() -> list[str]:
    return ["default"]


class Channel(dj.Model):
    class Status(dj.TextChoices):
        ENABLED = "enabled", _("Enabled")
        DISABLED = "disabled", _("Disabled")

    name = dj.CharField(max_length=128, verbose_name=_("name"))
    type = dj.CharField(max_length=32, choices=CHOICES, default="openai", verbose_name=_("type"))
    base_url = dj.CharField(
        max_length=512, blank=True, help_text=_("Blank: the type's default."), verbose_name=_("base url")
    )
    models = dj.JSONField(
        default=list, blank=True, help_text=_("Model names this channel serves."), verbose_name=_("models")
    )
    model_mapping = dj.JSONField(
        default=dict, blank=True, help_text=_("Requested model → upstream model."), verbose_name=_("model mapping")
    )
    groups = dj.JSONField(
        default=default_groups, blank=True, help_text=_("Group names allowed to use it."), verbose_name=_("groups")
    )
    priority = dj.IntegerField(default=0, help_text=_("Higher tiers are tried first."), verbose_name=_("priority"))
    weight = dj.PositiveIntegerField(default=1, validators=[MinValueValidator(1)], verbose_name=_("weight"))
    status = dj.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED, verbose_name=_("status"))
    config = dj.JSONField(default=dict, blank=True, verbose_name=_("config"))
    test_model = dj.CharField(max_length=128, blank=True, verbose_name=_("test model"))
    proxy_url = dj.CharField(max_length=512, blank=True, verbose_name=_("proxy url"))
    include_usage = dj.BooleanField(
        default=True, help_text=_("Ask streams for a usage chunk."), verbose_name=_("include usage")
    )
    connect_timeout = dj.FloatField(default=10.0, verbose_name=_("connect timeout"))
    first_byte_timeout = dj.FloatField(default=120.0, verbose_name=_("first byte timeout"))
    idle_timeout = dj.FloatField(
        default=120.0, help_text=_("Seconds between stream chunks."), verbose_name=_("idle timeout")
    )
    probe_interval = dj.PositiveIntegerField(
        default=1800,
        help_text=_("Seconds between scheduled probes of an active key (0: never)."),
        verbose_name=_("probe interval"),
    )
    recovery_probe_interval = dj.PositiveIntegerField(
        default=300,
        help_text=_(
            "Seconds between scheduled probes of a cooling or auto-disabled key, so recovered keys "
            "come back by themselves (0: never)."
        ),
        verbose_name=_("recovery probe interval"),
    )
    min_balance = dj.DecimalField(
        max_digits=20,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_(
            "Auto-disable a key whose provider balance is below this, in the provider's currency "
            "(empty: never). Only for types that report a balance."
        ),
        verbose_name=_("min balance"),
    )
    created_at = dj.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = dj.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    deleted_at = dj.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("deleted at"))

    objects = ChannelQuerySet.as_manager()

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["-priority", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or CHANNEL_TYPES[self.type].default_base_url).rstrip("/")

    @property
    def effective_test_model(self) -> str:
        return self.test_model or (self.models[0] if self.models else "")


class ChannelKey(dj.Model):
    class State(dj.TextChoices):
        ACTIVE = "active", _("Active")
        COOLING = "cooling", _("Cooling")
        AUTO_DISABLED = "auto_disabled", _("Auto Disabled")
        MANUAL_DISABLED = "manual_disabled", _("Manual Disabled")

    channel = dj.ForeignKey(Channel, on_delete=dj.CASCADE, related_name="keys", verbose_name=_("channel"))
    secret = dj.TextField(editable=False, help_text=_("Fernet ciphertext."), verbose_name=_("secret"))
    fingerprint = dj.CharField(max_length=64, editable=False, verbose_name=_("fingerprint"))
    hint = dj.CharField(max_length=16, editable=False, verbose_name=_("hint"))
    state = dj.CharField(max_length=16, choices=State.choices, default=State.ACTIVE, verbose_name=_("state"))
    state_reason = dj.CharField(max_length=255, blank=True, verbose_name=_("state reason"))
    state_changed_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("state changed at"))
    cooldown_until = dj.DateTimeField(null=True, blank=True, verbose_name=_("cooldown until"))
    rpm_limit = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("rpm limit"))
    tpm_limit = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("tpm limit"))
    last_used_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("last used at"))
    last_success_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("last success at"))
    last_error = dj.TextField(blank=True, verbose_name=_("last error"))
    last_error_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("last error at"))
    latency_ms = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("latency ms"))
    last_probed_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("last probed at"))
    balance = dj.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True, verbose_name=_("balance"))
    balance_currency = dj.CharField(max_length=8, blank=True, verbose_name=_("balance currency"))
    balance_updated_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("balance updated at"))
    created_at = dj.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    deleted_at = dj.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("deleted at"))

    objects = ChannelKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("channel key")
        verbose_name_plural = _("channel keys")
        ordering = ["id"]
        constraints = [
            dj.UniqueConstraint(
                fields=["channel", "fingerprint"],
                condition=dj.Q(deleted_at__isnull=True),
                name="channelkey_unique_live_secret",
            )
        ]

    def __str__(self) -> str:
        return f"key {self.pk} {self.hint}"

    def set_secret(self, secret: str) -> None:
        self.secret = crypto.encrypt(secret)
        self.fingerprint = crypto.fingerprint(secret)
        self.hint = crypto.mask(secret)

    def reveal(self) -> str:
        return crypto.decrypt(self.secret)


class KeyEvent(dj.Model):
    """One state transition of a key, with why (the upstream's words, masked)."""

    key = dj.ForeignKey(ChannelKey, on_delete=dj.CASCADE, related_name="events", verbose_name=_("key"))
    from_state = dj.CharField(max_length=16, blank=True, verbose_name=_("from state"))
    to_state = dj.CharField(max_length=16, verbose_name=_("to state"))
    reason = dj.CharField(max_length=64, verbose_name=_("reason"))
    message = dj.TextField(blank=True, verbose_name=_("message"))
    source = dj.CharField(max_length=16, help_text=_("relay, probe or operator"), verbose_name=_("source"))
    created_at = dj.DateTimeField(db_index=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("key event")
        verbose_name_plural = _("key events")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"key {self.key_id}: {self.from_state} → {self.to_state} ({self.reason})"


class DisablePhrase(dj.Model):
    """Operator-added text that, found in an upstream error, disables the key."""

    phrase = dj.CharField(
        max_length=200, unique=True, help_text=_("Matched case-insensitively."), verbose_name=_("phrase")
    )
    created_at = dj.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("disable phrase")
        verbose_name_plural = _("disable phrases")
        ordering = ["phrase"]

    def __str__(self) -> str:
        return self.phrase


class Notification(dj.Model):
    """The last operator notification per subject and kind. A new one about
    the same subject waits out ONEPROXY_NOTIFY_INTERVAL_MINUTES; the row is
    the lock, so every process (relay, workers) agrees."""

    class Kind(dj.TextChoices):
        KEY_DISABLED = "key_disabled", _("Key Disabled")
        KEY_RECOVERED = "key_recovered", _("Key Recovered")
        CHANNEL_EXHAUSTED = "channel_exhausted", _("Channel Exhausted")
        MODEL_EXHAUSTED = "model_exhausted", _("Model Exhausted")

    kind = dj.CharField(max_length=32, choices=Kind.choices, verbose_name=_("kind"))
    subject = dj.CharField(max_length=200, help_text=_("key:ID, channel:ID or model:NAME"), verbose_name=_("subject"))
    last_sent_at = dj.DateTimeField(verbose_name=_("last sent at"))
    sent_count = dj.PositiveIntegerField(default=0, verbose_name=_("sent count"))
    suppressed_count = dj.PositiveIntegerField(
        default=0, help_text=_("Held back since the last one sent."), verbose_name=_("suppressed count")
    )
    last_text = dj.TextField(blank=True, verbose_name=_("last text"))
    last_error = dj.TextField(
        blank=True, help_text=_("Why the last delivery failed, if it did."), verbose_name=_("last error")
    )

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-last_sent_at"]
        constraints = [dj.UniqueConstraint(fields=["kind", "subject"], name="notification_one_per_subject")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}"
