"""Channels (an upstream account at a provider) and their key pools."""

from __future__ import annotations

from django.core.validators import MinValueValidator

# Aliased: `models` is also a field name (the models a channel or token allows).
from django.db import models as dj

from channels_app import crypto
from channels_app.querysets import ChannelKeyQuerySet, ChannelQuerySet
from relay.channel_types import CHANNEL_TYPES, CHOICES


def default_groups() -> list[str]:
    return ["default"]


class Channel(dj.Model):
    class Status(dj.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    name = dj.CharField(max_length=128)
    type = dj.CharField(max_length=32, choices=CHOICES, default="openai")
    base_url = dj.CharField(max_length=512, blank=True, help_text="Blank: the type's default.")
    models = dj.JSONField(default=list, blank=True, help_text="Model names this channel serves.")
    model_mapping = dj.JSONField(default=dict, blank=True, help_text="Requested model → upstream model.")
    groups = dj.JSONField(default=default_groups, blank=True, help_text="Group names allowed to use it.")
    priority = dj.IntegerField(default=0, help_text="Higher tiers are tried first.")
    weight = dj.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    status = dj.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED)
    config = dj.JSONField(default=dict, blank=True)
    test_model = dj.CharField(max_length=128, blank=True)
    proxy_url = dj.CharField(max_length=512, blank=True)
    include_usage = dj.BooleanField(default=True, help_text="Ask streams for a usage chunk.")
    connect_timeout = dj.FloatField(default=10.0)
    first_byte_timeout = dj.FloatField(default=120.0)
    idle_timeout = dj.FloatField(default=120.0, help_text="Seconds between stream chunks.")
    probe_interval = dj.PositiveIntegerField(
        default=1800, help_text="Seconds between scheduled probes of an active key (0: never)."
    )
    recovery_probe_interval = dj.PositiveIntegerField(
        default=300,
        help_text="Seconds between scheduled probes of a cooling or auto-disabled key, so recovered keys "
        "come back by themselves (0: never).",
    )
    min_balance = dj.DecimalField(
        max_digits=20,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Auto-disable a key whose provider balance is below this, in the provider's currency "
        "(empty: never). Only for types that report a balance.",
    )
    created_at = dj.DateTimeField(auto_now_add=True)
    updated_at = dj.DateTimeField(auto_now=True)
    deleted_at = dj.DateTimeField(null=True, blank=True, editable=False)

    objects = ChannelQuerySet.as_manager()

    class Meta:
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
        ACTIVE = "active"
        COOLING = "cooling"
        AUTO_DISABLED = "auto_disabled"
        MANUAL_DISABLED = "manual_disabled"

    channel = dj.ForeignKey(Channel, on_delete=dj.CASCADE, related_name="keys")
    secret = dj.TextField(editable=False, help_text="Fernet ciphertext.")
    fingerprint = dj.CharField(max_length=64, editable=False)
    hint = dj.CharField(max_length=16, editable=False)
    state = dj.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    state_reason = dj.CharField(max_length=255, blank=True)
    state_changed_at = dj.DateTimeField(null=True, blank=True)
    cooldown_until = dj.DateTimeField(null=True, blank=True)
    rpm_limit = dj.PositiveIntegerField(null=True, blank=True)
    tpm_limit = dj.PositiveIntegerField(null=True, blank=True)
    last_used_at = dj.DateTimeField(null=True, blank=True)
    last_success_at = dj.DateTimeField(null=True, blank=True)
    last_error = dj.TextField(blank=True)
    last_error_at = dj.DateTimeField(null=True, blank=True)
    latency_ms = dj.PositiveIntegerField(null=True, blank=True)
    last_probed_at = dj.DateTimeField(null=True, blank=True)
    balance = dj.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    balance_currency = dj.CharField(max_length=8, blank=True)
    balance_updated_at = dj.DateTimeField(null=True, blank=True)
    created_at = dj.DateTimeField(auto_now_add=True)
    deleted_at = dj.DateTimeField(null=True, blank=True, editable=False)

    objects = ChannelKeyQuerySet.as_manager()

    class Meta:
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

    key = dj.ForeignKey(ChannelKey, on_delete=dj.CASCADE, related_name="events")
    from_state = dj.CharField(max_length=16, blank=True)
    to_state = dj.CharField(max_length=16)
    reason = dj.CharField(max_length=64)
    message = dj.TextField(blank=True)
    source = dj.CharField(max_length=16, help_text="relay, probe or operator")
    created_at = dj.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"key {self.key_id}: {self.from_state} → {self.to_state} ({self.reason})"


class DisablePhrase(dj.Model):
    """Operator-added text that, found in an upstream error, disables the key."""

    phrase = dj.CharField(max_length=200, unique=True, help_text="Matched case-insensitively.")
    created_at = dj.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["phrase"]

    def __str__(self) -> str:
        return self.phrase


class Notification(dj.Model):
    """The last operator notification per subject and kind. A new one about
    the same subject waits out ONEPROXY_NOTIFY_INTERVAL_MINUTES; the row is
    the lock, so every process (relay, workers) agrees."""

    class Kind(dj.TextChoices):
        KEY_DISABLED = "key_disabled"
        KEY_RECOVERED = "key_recovered"
        CHANNEL_EXHAUSTED = "channel_exhausted"
        MODEL_EXHAUSTED = "model_exhausted"

    kind = dj.CharField(max_length=32, choices=Kind.choices)
    subject = dj.CharField(max_length=200, help_text="key:ID, channel:ID or model:NAME")
    last_sent_at = dj.DateTimeField()
    sent_count = dj.PositiveIntegerField(default=0)
    suppressed_count = dj.PositiveIntegerField(default=0, help_text="Held back since the last one sent.")
    last_text = dj.TextField(blank=True)
    last_error = dj.TextField(blank=True, help_text="Why the last delivery failed, if it did.")

    class Meta:
        ordering = ["-last_sent_at"]
        constraints = [dj.UniqueConstraint(fields=["kind", "subject"], name="notification_one_per_subject")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}"
