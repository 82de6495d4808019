"""Who may call the relay and what it costs them. Amounts are integer µUSD."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator

# Aliased: `models` is also a field name (the models a channel or token allows).
from django.db import models as dj
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from billing.querysets import RedemptionCodeQuerySet, TokenQuerySet, UsageLogQuerySet, UsageRollupQuerySet
from core.roles import Role as UserRole

DEFAULT_GROUP = "default"


class BudgetPeriod(dj.TextChoices):
    """Budget periods in UTC: a day from midnight, an ISO week from Monday, a
    calendar month from the 1st (see billing.budgets)."""

    DAY = "day", _("Day")
    WEEK = "week", _("Week")
    MONTH = "month", _("Month")


class BudgetFields(dj.Model):
    """A spending budget per period; the relay refuses requests beyond it."""

    budget = dj.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_("µUSD per period; empty: no budget."),
        verbose_name=_("budget"),
    )
    budget_period = dj.CharField(
        max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH, verbose_name=_("budget period")
    )

    class Meta:
        abstract = True


class Group(dj.Model):
    name = dj.SlugField(max_length=64, unique=True, verbose_name=_("name"))
    multiplier = dj.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal(1),
        validators=[MinValueValidator(Decimal(0))],
        verbose_name=_("multiplier"),
    )
    description = dj.CharField(max_length=255, blank=True, verbose_name=_("description"))

    class Meta:
        verbose_name = _("group")
        verbose_name_plural = _("groups")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def default_group_id() -> int:
    group, _ = Group.objects.get_or_create(name=DEFAULT_GROUP)
    return group.pk


class Team(BudgetFields):
    name = dj.CharField(max_length=128, unique=True, verbose_name=_("name"))
    multiplier = dj.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal(1),
        validators=[MinValueValidator(Decimal(0))],
        verbose_name=_("multiplier"),
    )
    created_at = dj.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser, BudgetFields):  # noqa: DJ008 - AbstractBaseUser.__str__ gives the username
    Role = UserRole

    role = dj.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER, verbose_name=_("role"))
    group = dj.ForeignKey(
        Group,
        on_delete=dj.PROTECT,
        blank=True,
        related_name="users",
        help_text=_("Blank: the default group."),
        verbose_name=_("group"),
    )
    team = dj.ForeignKey(
        Team, on_delete=dj.SET_NULL, null=True, blank=True, related_name="members", verbose_name=_("team")
    )
    # Sum of this user's ledger, kept in the same transaction as each entry.
    balance = dj.BigIntegerField(default=0, editable=False, help_text=_("µUSD"), verbose_name=_("balance"))
    access_token_hash = dj.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False, verbose_name=_("access token hash")
    )
    access_token_prefix = dj.CharField(max_length=16, blank=True, editable=False, verbose_name=_("access token prefix"))
    language = dj.CharField(
        max_length=16,
        blank=True,
        choices=settings.LANGUAGES,
        verbose_name=_("language"),
        help_text=_("The admin's language for this user. Empty: the browser's."),
    )

    def save(self, *args, **kwargs) -> None:
        # Role is the one source of truth for admin access; createsuperuser
        # still yields an operator.
        if self.is_superuser and self.role == self.Role.MEMBER:
            self.role = self.Role.OPERATOR
        self.is_superuser = self.role == self.Role.OPERATOR
        self.is_staff = self.role != self.Role.MEMBER
        if self.group_id is None:
            self.group_id = default_group_id()
        super().save(*args, **kwargs)

    @property
    def is_operator(self) -> bool:
        return self.role == self.Role.OPERATOR

    @property
    def is_team_admin(self) -> bool:
        return self.role == self.Role.TEAM_ADMIN


class Token(dj.Model):
    """A relay key (``sk-…``). Only its SHA-256 and a display prefix are kept."""

    class Status(dj.TextChoices):
        ACTIVE = "active", _("Active")
        DISABLED = "disabled", _("Disabled")

    user = dj.ForeignKey(User, on_delete=dj.PROTECT, related_name="tokens", verbose_name=_("user"))
    name = dj.CharField(max_length=128, verbose_name=_("name"))
    key_hash = dj.CharField(max_length=64, unique=True, editable=False, verbose_name=_("key hash"))
    key_prefix = dj.CharField(max_length=16, editable=False, verbose_name=_("key prefix"))
    status = dj.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, verbose_name=_("status"))
    expires_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("expires at"))
    quota = dj.BigIntegerField(
        null=True, blank=True, help_text=_("Spending cap in µUSD; empty: none."), verbose_name=_("quota")
    )
    used = dj.BigIntegerField(default=0, editable=False, help_text=_("µUSD charged so far."), verbose_name=_("used"))
    models = dj.JSONField(
        default=list, blank=True, help_text=_("Allowed models; empty: all."), verbose_name=_("models")
    )
    subnets = dj.JSONField(
        default=list, blank=True, help_text=_("Allowed client CIDRs; empty: all."), verbose_name=_("subnets")
    )
    rpm_limit = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("rpm limit"))
    tpm_limit = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("tpm limit"))
    rpd_limit = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("rpd limit"))
    concurrency_limit = dj.PositiveIntegerField(null=True, blank=True, verbose_name=_("concurrency limit"))
    created_at = dj.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    last_used_at = dj.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("last used at"))
    deleted_at = dj.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("deleted at"))

    objects = TokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("token")
        verbose_name_plural = _("tokens")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix})"


class ModelPrice(dj.Model):
    """USD per 1M tokens (or per request / per image / per second of audio). Blank channel_type: any."""

    model = dj.CharField(max_length=128, verbose_name=_("model"))
    channel_type = dj.CharField(max_length=32, blank=True, verbose_name=_("channel type"))
    input = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0), verbose_name=_("input"))
    output = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0), verbose_name=_("output"))
    cached_input = dj.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Empty: same as input."),
        verbose_name=_("cached input"),
    )
    audio = dj.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True, verbose_name=_("audio"))
    cache_write = dj.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Per 1M prompt tokens written to a prompt cache (Anthropic); empty: same as input."),
        verbose_name=_("cache write"),
    )
    per_request = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0), verbose_name=_("per request"))
    per_image = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0), verbose_name=_("per image"))
    per_second = dj.DecimalField(
        max_digits=16,
        decimal_places=10,
        default=Decimal(0),
        help_text=_("USD per second of audio (whisper-1: 0.0001)."),
        verbose_name=_("per second"),
    )
    source = dj.CharField(
        max_length=255,
        blank=True,
        help_text=_("Where the price was taken from; empty: set here."),
        verbose_name=_("source"),
    )
    as_of = dj.DateField(null=True, blank=True, help_text=_("When the source was read."), verbose_name=_("as of"))
    updated_at = dj.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("model price")
        verbose_name_plural = _("model prices")
        ordering = ["model"]
        constraints = [dj.UniqueConstraint(fields=["model", "channel_type"], name="modelprice_unique")]

    def __str__(self) -> str:
        return self.model if not self.channel_type else f"{self.model} [{self.channel_type}]"


class LedgerEntry(dj.Model):
    """Append-only: every change of a balance is one row."""

    class Kind(dj.TextChoices):
        TOPUP = "topup", _("Topup")
        REDEMPTION = "redemption", _("Redemption")
        CHARGE = "charge", _("Charge")
        REFUND = "refund", _("Refund")
        ADJUSTMENT = "adjustment", _("Adjustment")

    user = dj.ForeignKey(User, on_delete=dj.PROTECT, related_name="ledger", verbose_name=_("user"))
    kind = dj.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    amount = dj.BigIntegerField(help_text=_("µUSD; negative for charges."), verbose_name=_("amount"))
    balance_after = dj.BigIntegerField(verbose_name=_("balance after"))
    # Charges settled since rollups exist are one entry per settlement batch
    # and user (the sum of that user's usage in the batch). Older charges are
    # one per request and name their usage row, which retention may prune:
    # no database constraint, so the entry stays as written.
    batch = dj.ForeignKey(
        "SettlementBatch",
        on_delete=dj.PROTECT,
        null=True,
        blank=True,
        related_name="charges",
        editable=False,
        verbose_name=_("batch"),
    )
    usage = dj.OneToOneField(
        "UsageLog",
        on_delete=dj.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="ledger_entry",
        editable=False,
        verbose_name=_("usage"),
    )
    actor = dj.ForeignKey(User, on_delete=dj.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("actor"))
    note = dj.CharField(max_length=255, blank=True, verbose_name=_("note"))
    created_at = dj.DateTimeField(auto_now_add=True, db_index=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("ledger entry")
        ordering = ["-id"]
        verbose_name_plural = _("ledger entries")

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} µUSD"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("ledger entries are append-only")
        super().save(*args, **kwargs)


class SettlementBatch(dj.Model):
    """One settlement (billing.usage_sink.apply_usage): the usage rows it wrote,
    charged as one ledger entry per user, and rolled up in the same transaction."""

    created_at = dj.DateTimeField(db_index=True, verbose_name=_("created at"))
    requests = dj.PositiveIntegerField(default=0, verbose_name=_("requests"))
    cost = dj.BigIntegerField(default=0, help_text=_("µUSD charged"), verbose_name=_("cost"))
    backfill = dj.BooleanField(
        default=False,
        help_text=_("Rows settled before rollups existed, rolled up by backfill_history; charged per request."),
        verbose_name=_("backfill"),
    )

    class Meta:
        verbose_name = _("settlement batch")
        ordering = ["-id"]
        verbose_name_plural = _("settlement batches")

    def __str__(self) -> str:
        return f"batch #{self.pk}"


class UsageLog(dj.Model):
    """One row per request that reached an upstream. Pruned after the
    retention (billing.prune_usage_logs); its rollups and charges stay."""

    request_id = dj.CharField(max_length=64, unique=True, verbose_name=_("request id"))
    created_at = dj.DateTimeField(db_index=True, verbose_name=_("created at"))
    user = dj.ForeignKey(User, on_delete=dj.PROTECT, related_name="usage", verbose_name=_("user"))
    # The team charged: the user's when the request was made (budgets and
    # team views count usage "while a member"). Teams may be deleted.
    team = dj.ForeignKey(
        Team,
        on_delete=dj.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="usage",
        db_index=False,
        verbose_name=_("team"),
    )
    token = dj.ForeignKey(
        Token, on_delete=dj.PROTECT, null=True, blank=True, related_name="usage", verbose_name=_("token")
    )
    # Empty: settled before rollups existed and not yet back-filled.
    batch = dj.ForeignKey(
        SettlementBatch, on_delete=dj.PROTECT, null=True, blank=True, related_name="usage", verbose_name=_("batch")
    )
    endpoint = dj.CharField(max_length=64, verbose_name=_("endpoint"))
    model = dj.CharField(max_length=128, db_index=True, verbose_name=_("model"))
    upstream_model = dj.CharField(max_length=128, blank=True, verbose_name=_("upstream model"))
    channel = dj.ForeignKey(
        "channels_app.Channel",
        on_delete=dj.PROTECT,
        null=True,
        blank=True,
        related_name="usage",
        verbose_name=_("channel"),
    )
    key = dj.ForeignKey(
        "channels_app.ChannelKey",
        on_delete=dj.PROTECT,
        null=True,
        blank=True,
        related_name="usage",
        verbose_name=_("key"),
    )
    prompt_tokens = dj.PositiveIntegerField(default=0, verbose_name=_("prompt tokens"))
    completion_tokens = dj.PositiveIntegerField(default=0, verbose_name=_("completion tokens"))
    cached_tokens = dj.PositiveIntegerField(
        default=0, help_text=_("Of the prompt: read from a prompt cache."), verbose_name=_("cached tokens")
    )
    cache_write_tokens = dj.PositiveIntegerField(
        default=0, help_text=_("Of the prompt: written to a prompt cache."), verbose_name=_("cache write tokens")
    )
    estimated = dj.BooleanField(
        default=False, help_text=_("Tokens counted locally; upstream reported none."), verbose_name=_("estimated")
    )
    cost = dj.BigIntegerField(default=0, help_text=_("µUSD charged"), verbose_name=_("cost"))
    held = dj.BigIntegerField(
        default=0, help_text=_("µUSD held for the request before it was forwarded"), verbose_name=_("held")
    )
    written_off = dj.BigIntegerField(
        default=0,
        help_text=_(
            "µUSD of the real cost not charged: it would have taken the balance below minus this "
            "request's own overdraft (cost beyond its hold)"
        ),
        verbose_name=_("written off"),
    )
    group_multiplier = dj.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(1), verbose_name=_("group multiplier")
    )
    team_multiplier = dj.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(1), verbose_name=_("team multiplier")
    )
    attempts = dj.PositiveSmallIntegerField(default=1, verbose_name=_("attempts"))
    status = dj.PositiveSmallIntegerField(help_text=_("HTTP status sent to the client."), verbose_name=_("status"))
    latency_ms = dj.PositiveIntegerField(default=0, verbose_name=_("latency ms"))
    stream = dj.BooleanField(default=False, verbose_name=_("stream"))
    error = dj.TextField(blank=True, verbose_name=_("error"))

    objects = UsageLogQuerySet.as_manager()

    class Meta:
        verbose_name = _("usage log")
        verbose_name_plural = _("usage logs")
        ordering = ["-id"]
        indexes = [
            # The explorer's pages, newest first: a team admin's are always
            # one team's; the outcome filter's errors are a small part of all.
            dj.Index(fields=["team", "-id"], name="usagelog_team_newest"),
            dj.Index(fields=["-id"], condition=dj.Q(status__gte=400), name="usagelog_errors_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model}"


# Upper bounds (ms) of the latency histogram's buckets; a last bucket takes the rest.
LATENCY_BOUNDS_MS = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000)
LATENCY_BUCKETS = (*(f"latency_le_{b}" for b in LATENCY_BOUNDS_MS), f"latency_gt_{LATENCY_BOUNDS_MS[-1]}")


def _count(verbose_name: Any) -> dj.BigIntegerField:
    return dj.BigIntegerField(default=0, verbose_name=verbose_name)


class UsageRollup(dj.Model):
    """Usage per hour (and per day) by user, team, token, model, channel and
    key, added to in the same transaction as the usage rows it counts
    (billing/rollups.py). Totals and charts read these, never raw rows, so
    their cost grows with the combinations used, not with requests.

    Dimensions name rows without database constraints: the rows outlive the
    raw usage, and a deleted team's rows keep its id."""

    class Span(dj.TextChoices):
        HOUR = "hour", _("Hour")
        DAY = "day", _("Day")

    span = dj.CharField(max_length=4, choices=Span.choices, verbose_name=_("span"))
    start = dj.DateTimeField(help_text=_("UTC; the hour or the day starting then."), verbose_name=_("start"))
    user = dj.ForeignKey(
        User, on_delete=dj.PROTECT, db_constraint=False, related_name="rollups", verbose_name=_("user")
    )
    team = dj.ForeignKey(
        Team,
        on_delete=dj.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="rollups",
        verbose_name=_("team"),
    )
    token = dj.ForeignKey(
        Token,
        on_delete=dj.PROTECT,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="rollups",
        verbose_name=_("token"),
    )
    model = dj.CharField(max_length=128, verbose_name=_("model"))
    channel = dj.ForeignKey(
        "channels_app.Channel",
        on_delete=dj.PROTECT,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="rollups",
        verbose_name=_("channel"),
    )
    key = dj.ForeignKey(
        "channels_app.ChannelKey",
        on_delete=dj.PROTECT,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="rollups",
        verbose_name=_("key"),
    )
    requests = _count(_("requests"))
    errors = dj.BigIntegerField(
        default=0, help_text=_("Requests answered with a status of 400 or more."), verbose_name=_("errors")
    )
    prompt_tokens = _count(_("prompt tokens"))
    completion_tokens = _count(_("completion tokens"))
    cached_tokens = _count(_("cached tokens"))
    cost = dj.BigIntegerField(default=0, help_text=_("µUSD charged"), verbose_name=_("cost"))
    latency_ms = dj.BigIntegerField(
        default=0, help_text=_("Sum of the requests' latencies."), verbose_name=_("latency ms")
    )
    # Requests per latency bucket (not cumulative): ≤ 100 ms, ≤ 250 ms, … > 60 s.
    latency_le_100 = _count(_("latency le 100"))
    latency_le_250 = _count(_("latency le 250"))
    latency_le_500 = _count(_("latency le 500"))
    latency_le_1000 = _count(_("latency le 1000"))
    latency_le_2500 = _count(_("latency le 2500"))
    latency_le_5000 = _count(_("latency le 5000"))
    latency_le_10000 = _count(_("latency le 10000"))
    latency_le_30000 = _count(_("latency le 30000"))
    latency_le_60000 = _count(_("latency le 60000"))
    latency_gt_60000 = _count(_("latency gt 60000"))

    objects = UsageRollupQuerySet.as_manager()

    class Meta:
        verbose_name = _("usage rollup")
        verbose_name_plural = _("usage rollups")
        constraints = [
            # Absent dimensions count as 0, so ON CONFLICT finds their row
            # (NULLs are never equal in a unique index).
            dj.UniqueConstraint(
                F("span"),
                F("start"),
                F("user"),
                Coalesce(F("team"), Value(0)),
                Coalesce(F("token"), Value(0)),
                F("model"),
                Coalesce(F("channel"), Value(0)),
                Coalesce(F("key"), Value(0)),
                name="usagerollup_bucket",
            )
        ]

    def __str__(self) -> str:
        return f"{self.span} {self.start:%Y-%m-%d %H:00} {self.model}"


class BudgetSpend(dj.Model):
    """µUSD charged to a user or a team in one budget period, moved at
    settlement in the same transaction as the charge. Kept for every period
    kind (day, week, month), so a budget set or changed mid-period counts
    what was already spent."""

    class Subject(dj.TextChoices):
        USER = "user", _("User")
        TEAM = "team", _("Team")

    subject = dj.CharField(max_length=4, choices=Subject.choices, verbose_name=_("subject"))
    subject_id = dj.BigIntegerField(verbose_name=_("subject id"))
    period = dj.CharField(max_length=8, choices=BudgetPeriod.choices, verbose_name=_("period"))
    start = dj.DateTimeField(help_text=_("UTC start of the period."), verbose_name=_("start"))
    spent = dj.BigIntegerField(default=0, help_text=_("µUSD"), verbose_name=_("spent"))

    class Meta:
        verbose_name = _("budget spend")
        verbose_name_plural = _("budget spends")
        constraints = [
            dj.UniqueConstraint(fields=["subject", "subject_id", "period", "start"], name="budgetspend_period")
        ]

    def __str__(self) -> str:
        return f"{self.subject} #{self.subject_id} {self.period} from {self.start:%Y-%m-%d}: {self.spent} µUSD"


class HistoryState(dj.Model):
    """One row: how far raw usage rows reach back (retention prunes before it)."""

    pruned_before = dj.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Raw usage rows before this instant may be gone; rollups have them."),
        verbose_name=_("pruned before"),
    )

    def __str__(self) -> str:
        return f"pruned before {self.pruned_before}"


class RedemptionCode(dj.Model):
    """A one-time code worth ``amount`` µUSD. Kept in clear: operators export
    batches as CSV to hand out. Redeemed exactly once (services.redeem)."""

    code = dj.CharField(max_length=32, unique=True, editable=False, verbose_name=_("code"))
    name = dj.CharField(
        max_length=128, db_index=True, help_text=_("The batch this code belongs to."), verbose_name=_("name")
    )
    amount = dj.BigIntegerField(validators=[MinValueValidator(1)], help_text=_("µUSD"), verbose_name=_("amount"))
    expires_at = dj.DateTimeField(null=True, blank=True, verbose_name=_("expires at"))
    created_by = dj.ForeignKey(
        User, on_delete=dj.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("created by")
    )
    created_at = dj.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    redeemed_by = dj.ForeignKey(
        User,
        on_delete=dj.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="redemptions",
        verbose_name=_("redeemed by"),
    )
    redeemed_at = dj.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("redeemed at"))

    objects = RedemptionCodeQuerySet.as_manager()

    class Meta:
        verbose_name = _("redemption code")
        verbose_name_plural = _("redemption codes")
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.code

    def status_at(self, now: datetime) -> str:
        """ "redeemed", "expired" or "unused" at ``now``."""
        if self.redeemed_at is not None:
            return "redeemed"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "unused"


class ReconcileReport(dj.Model):
    """What one ``billing.reconcile`` run found and fixed; read-only in admin."""

    created_at = dj.DateTimeField(auto_now_add=True, db_index=True, verbose_name=_("created at"))
    service_mode = dj.BooleanField(default=False, verbose_name=_("service mode"))
    users_checked = dj.PositiveIntegerField(default=0, verbose_name=_("users checked"))
    drifted_users = dj.PositiveIntegerField(
        default=0, help_text=_("Balance column differed from the ledger sum."), verbose_name=_("drifted users")
    )
    drift = dj.JSONField(
        default=list,
        blank=True,
        help_text=_("[{user_id, username, balance, ledger_sum, drift}] in µUSD."),
        verbose_name=_("drift"),
    )
    usage_drifted_users = dj.PositiveIntegerField(
        default=0,
        help_text=_("Users whose charges in the ledger differ from their settled usage."),
        verbose_name=_("usage drifted users"),
    )
    usage_drift = dj.JSONField(
        default=list,
        blank=True,
        help_text=_("[{user_id, username, charged, settled, drift}] in µUSD; not auto-fixed."),
        verbose_name=_("usage drift"),
    )
    hours_checked = dj.PositiveIntegerField(
        default=0, help_text=_("Hours of rollups compared with their raw rows."), verbose_name=_("hours checked")
    )
    rollup_drifted_hours = dj.PositiveIntegerField(
        default=0,
        help_text=_("Hours and days whose rollups differ from what they summarise (raw rows; hours)."),
        verbose_name=_("rollup drifted hours"),
    )
    rollup_drift = dj.JSONField(
        default=list,
        blank=True,
        help_text=_("[{start, rollups, rows}]; not auto-fixed."),
        verbose_name=_("rollup drift"),
    )
    budget_drifted = dj.PositiveIntegerField(
        default=0,
        help_text=_("Budget counters of the current periods that differed from the rollups."),
        verbose_name=_("budget drifted"),
    )
    budget_drift = dj.JSONField(
        default=list,
        blank=True,
        help_text=_("[{subject, subject_id, period, start, counter, rollups}]; set to the rollups."),
        verbose_name=_("budget drift"),
    )
    unrolled_usage = dj.PositiveIntegerField(
        default=0,
        help_text=_("Usage rows settled before rollups existed and not yet back-filled (backfill_history)."),
        verbose_name=_("unrolled usage"),
    )
    mirrors_checked = dj.PositiveIntegerField(default=0, verbose_name=_("mirrors checked"))
    stale_holds_released = dj.PositiveIntegerField(
        default=0,
        help_text=_("Holds of requests whose relay process died, given back."),
        verbose_name=_("stale holds released"),
    )
    mirrors_pending = dj.PositiveIntegerField(
        default=0, help_text=_("Users with usage still in the stream."), verbose_name=_("mirrors pending")
    )
    mirrors_released = dj.JSONField(
        default=list,
        blank=True,
        help_text=_("[{user_id, mirror, balance}]: mirrors dropped as stale (µUSD)."),
        verbose_name=_("mirrors released"),
    )

    class Meta:
        verbose_name = _("reconcile report")
        verbose_name_plural = _("reconcile reports")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"reconcile #{self.pk} {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def is_clean(self) -> bool:
        return not (self.drifted_users or self.usage_drifted_users or self.rollup_drifted_hours or self.budget_drifted)
