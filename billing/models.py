"""Who may call the relay and what it costs them. Amounts are integer µUSD."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator

# Aliased: `models` is also a field name (the models a channel or token allows).
from django.db import models as dj
from django.db.models import F, Value
from django.db.models.functions import Coalesce

from billing.querysets import RedemptionCodeQuerySet, TokenQuerySet, UsageLogQuerySet, UsageRollupQuerySet
from core.roles import Role as UserRole

DEFAULT_GROUP = "default"


class BudgetPeriod(dj.TextChoices):
    """Budget periods in UTC: a day from midnight, an ISO week from Monday, a
    calendar month from the 1st (see billing.budgets)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class BudgetFields(dj.Model):
    """A spending budget per period; the relay refuses requests beyond it."""

    budget = dj.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="µUSD per period; empty: no budget."
    )
    budget_period = dj.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)

    class Meta:
        abstract = True


class Group(dj.Model):
    name = dj.SlugField(max_length=64, unique=True)
    multiplier = dj.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(1), validators=[MinValueValidator(Decimal(0))]
    )
    description = dj.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def default_group_id() -> int:
    group, _ = Group.objects.get_or_create(name=DEFAULT_GROUP)
    return group.pk


class Team(BudgetFields):
    name = dj.CharField(max_length=128, unique=True)
    multiplier = dj.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(1), validators=[MinValueValidator(Decimal(0))]
    )
    created_at = dj.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser, BudgetFields):  # noqa: DJ008 - AbstractBaseUser.__str__ gives the username
    Role = UserRole

    role = dj.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    group = dj.ForeignKey(
        Group, on_delete=dj.PROTECT, blank=True, related_name="users", help_text="Blank: the default group."
    )
    team = dj.ForeignKey(Team, on_delete=dj.SET_NULL, null=True, blank=True, related_name="members")
    # Sum of this user's ledger, kept in the same transaction as each entry.
    balance = dj.BigIntegerField(default=0, editable=False, help_text="µUSD")
    access_token_hash = dj.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    access_token_prefix = dj.CharField(max_length=16, blank=True, editable=False)

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
        ACTIVE = "active"
        DISABLED = "disabled"

    user = dj.ForeignKey(User, on_delete=dj.PROTECT, related_name="tokens")
    name = dj.CharField(max_length=128)
    key_hash = dj.CharField(max_length=64, unique=True, editable=False)
    key_prefix = dj.CharField(max_length=16, editable=False)
    status = dj.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    expires_at = dj.DateTimeField(null=True, blank=True)
    quota = dj.BigIntegerField(null=True, blank=True, help_text="Spending cap in µUSD; empty: none.")
    used = dj.BigIntegerField(default=0, editable=False, help_text="µUSD charged so far.")
    models = dj.JSONField(default=list, blank=True, help_text="Allowed models; empty: all.")
    subnets = dj.JSONField(default=list, blank=True, help_text="Allowed client CIDRs; empty: all.")
    rpm_limit = dj.PositiveIntegerField(null=True, blank=True)
    tpm_limit = dj.PositiveIntegerField(null=True, blank=True)
    rpd_limit = dj.PositiveIntegerField(null=True, blank=True)
    concurrency_limit = dj.PositiveIntegerField(null=True, blank=True)
    created_at = dj.DateTimeField(auto_now_add=True)
    last_used_at = dj.DateTimeField(null=True, blank=True, editable=False)
    deleted_at = dj.DateTimeField(null=True, blank=True, editable=False)

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix})"


class ModelPrice(dj.Model):
    """USD per 1M tokens (or per request / per image / per second of audio). Blank channel_type: any."""

    model = dj.CharField(max_length=128)
    channel_type = dj.CharField(max_length=32, blank=True)
    input = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    output = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    cached_input = dj.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="Empty: same as input."
    )
    audio = dj.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cache_write = dj.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Per 1M prompt tokens written to a prompt cache (Anthropic); empty: same as input.",
    )
    per_request = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    per_image = dj.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    per_second = dj.DecimalField(
        max_digits=16, decimal_places=10, default=Decimal(0), help_text="USD per second of audio (whisper-1: 0.0001)."
    )
    source = dj.CharField(max_length=255, blank=True, help_text="Where the price was taken from; empty: set here.")
    as_of = dj.DateField(null=True, blank=True, help_text="When the source was read.")
    updated_at = dj.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        constraints = [dj.UniqueConstraint(fields=["model", "channel_type"], name="modelprice_unique")]

    def __str__(self) -> str:
        return self.model if not self.channel_type else f"{self.model} [{self.channel_type}]"


class LedgerEntry(dj.Model):
    """Append-only: every change of a balance is one row."""

    class Kind(dj.TextChoices):
        TOPUP = "topup"
        REDEMPTION = "redemption"
        CHARGE = "charge"
        REFUND = "refund"
        ADJUSTMENT = "adjustment"

    user = dj.ForeignKey(User, on_delete=dj.PROTECT, related_name="ledger")
    kind = dj.CharField(max_length=16, choices=Kind.choices)
    amount = dj.BigIntegerField(help_text="µUSD; negative for charges.")
    balance_after = dj.BigIntegerField()
    # Charges settled since rollups exist are one entry per settlement batch
    # and user (the sum of that user's usage in the batch). Older charges are
    # one per request and name their usage row, which retention may prune:
    # no database constraint, so the entry stays as written.
    batch = dj.ForeignKey(
        "SettlementBatch", on_delete=dj.PROTECT, null=True, blank=True, related_name="charges", editable=False
    )
    usage = dj.OneToOneField(
        "UsageLog",
        on_delete=dj.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="ledger_entry",
        editable=False,
    )
    actor = dj.ForeignKey(User, on_delete=dj.PROTECT, null=True, blank=True, related_name="+")
    note = dj.CharField(max_length=255, blank=True)
    created_at = dj.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} µUSD"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("ledger entries are append-only")
        super().save(*args, **kwargs)


class SettlementBatch(dj.Model):
    """One settlement (billing.usage_sink.apply_usage): the usage rows it wrote,
    charged as one ledger entry per user, and rolled up in the same transaction."""

    created_at = dj.DateTimeField(db_index=True)
    requests = dj.PositiveIntegerField(default=0)
    cost = dj.BigIntegerField(default=0, help_text="µUSD charged")
    backfill = dj.BooleanField(
        default=False,
        help_text="Rows settled before rollups existed, rolled up by backfill_history; charged per request.",
    )

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "settlement batches"

    def __str__(self) -> str:
        return f"batch #{self.pk}"


class UsageLog(dj.Model):
    """One row per request that reached an upstream. Pruned after the
    retention (billing.prune_usage_logs); its rollups and charges stay."""

    request_id = dj.CharField(max_length=64, unique=True)
    created_at = dj.DateTimeField(db_index=True)
    user = dj.ForeignKey(User, on_delete=dj.PROTECT, related_name="usage")
    # The team charged: the user's when the request was made (budgets and
    # team views count usage "while a member"). Teams may be deleted.
    team = dj.ForeignKey(
        Team, on_delete=dj.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="usage", db_index=False
    )
    token = dj.ForeignKey(Token, on_delete=dj.PROTECT, null=True, blank=True, related_name="usage")
    # Empty: settled before rollups existed and not yet back-filled.
    batch = dj.ForeignKey(SettlementBatch, on_delete=dj.PROTECT, null=True, blank=True, related_name="usage")
    endpoint = dj.CharField(max_length=64)
    model = dj.CharField(max_length=128, db_index=True)
    upstream_model = dj.CharField(max_length=128, blank=True)
    channel = dj.ForeignKey("channels_app.Channel", on_delete=dj.PROTECT, null=True, blank=True, related_name="usage")
    key = dj.ForeignKey("channels_app.ChannelKey", on_delete=dj.PROTECT, null=True, blank=True, related_name="usage")
    prompt_tokens = dj.PositiveIntegerField(default=0)
    completion_tokens = dj.PositiveIntegerField(default=0)
    cached_tokens = dj.PositiveIntegerField(default=0, help_text="Of the prompt: read from a prompt cache.")
    cache_write_tokens = dj.PositiveIntegerField(default=0, help_text="Of the prompt: written to a prompt cache.")
    estimated = dj.BooleanField(default=False, help_text="Tokens counted locally; upstream reported none.")
    cost = dj.BigIntegerField(default=0, help_text="µUSD charged")
    held = dj.BigIntegerField(default=0, help_text="µUSD held for the request before it was forwarded")
    written_off = dj.BigIntegerField(
        default=0,
        help_text="µUSD of the real cost not charged: it would have taken the balance below minus this "
        "request's own overdraft (cost beyond its hold)",
    )
    group_multiplier = dj.DecimalField(max_digits=12, decimal_places=6, default=Decimal(1))
    team_multiplier = dj.DecimalField(max_digits=12, decimal_places=6, default=Decimal(1))
    attempts = dj.PositiveSmallIntegerField(default=1)
    status = dj.PositiveSmallIntegerField(help_text="HTTP status sent to the client.")
    latency_ms = dj.PositiveIntegerField(default=0)
    stream = dj.BooleanField(default=False)
    error = dj.TextField(blank=True)

    objects = UsageLogQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model}"


# Upper bounds (ms) of the latency histogram's buckets; a last bucket takes the rest.
LATENCY_BOUNDS_MS = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000)
LATENCY_BUCKETS = (*(f"latency_le_{b}" for b in LATENCY_BOUNDS_MS), f"latency_gt_{LATENCY_BOUNDS_MS[-1]}")


def _count() -> dj.BigIntegerField:
    return dj.BigIntegerField(default=0)


class UsageRollup(dj.Model):
    """Usage per hour (and per day) by user, team, token, model, channel and
    key, added to in the same transaction as the usage rows it counts
    (billing/rollups.py). Totals and charts read these, never raw rows, so
    their cost grows with the combinations used, not with requests.

    Dimensions name rows without database constraints: the rows outlive the
    raw usage, and a deleted team's rows keep its id."""

    class Span(dj.TextChoices):
        HOUR = "hour"
        DAY = "day"

    span = dj.CharField(max_length=4, choices=Span.choices)
    start = dj.DateTimeField(help_text="UTC; the hour or the day starting then.")
    user = dj.ForeignKey(User, on_delete=dj.PROTECT, db_constraint=False, related_name="rollups")
    team = dj.ForeignKey(
        Team, on_delete=dj.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="rollups"
    )
    token = dj.ForeignKey(
        Token, on_delete=dj.PROTECT, db_constraint=False, null=True, blank=True, related_name="rollups"
    )
    model = dj.CharField(max_length=128)
    channel = dj.ForeignKey(
        "channels_app.Channel", on_delete=dj.PROTECT, db_constraint=False, null=True, blank=True, related_name="rollups"
    )
    key = dj.ForeignKey(
        "channels_app.ChannelKey",
        on_delete=dj.PROTECT,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="rollups",
    )
    requests = _count()
    errors = dj.BigIntegerField(default=0, help_text="Requests answered with a status of 400 or more.")
    prompt_tokens = _count()
    completion_tokens = _count()
    cached_tokens = _count()
    cost = dj.BigIntegerField(default=0, help_text="µUSD charged")
    latency_ms = dj.BigIntegerField(default=0, help_text="Sum of the requests' latencies.")
    # Requests per latency bucket (not cumulative): ≤ 100 ms, ≤ 250 ms, … > 60 s.
    latency_le_100 = _count()
    latency_le_250 = _count()
    latency_le_500 = _count()
    latency_le_1000 = _count()
    latency_le_2500 = _count()
    latency_le_5000 = _count()
    latency_le_10000 = _count()
    latency_le_30000 = _count()
    latency_le_60000 = _count()
    latency_gt_60000 = _count()

    objects = UsageRollupQuerySet.as_manager()

    class Meta:
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
        USER = "user"
        TEAM = "team"

    subject = dj.CharField(max_length=4, choices=Subject.choices)
    subject_id = dj.BigIntegerField()
    period = dj.CharField(max_length=8, choices=BudgetPeriod.choices)
    start = dj.DateTimeField(help_text="UTC start of the period.")
    spent = dj.BigIntegerField(default=0, help_text="µUSD")

    class Meta:
        constraints = [
            dj.UniqueConstraint(fields=["subject", "subject_id", "period", "start"], name="budgetspend_period")
        ]

    def __str__(self) -> str:
        return f"{self.subject} #{self.subject_id} {self.period} from {self.start:%Y-%m-%d}: {self.spent} µUSD"


class HistoryState(dj.Model):
    """One row: how far raw usage rows reach back (retention prunes before it)."""

    pruned_before = dj.DateTimeField(
        null=True, blank=True, help_text="Raw usage rows before this instant may be gone; rollups have them."
    )

    def __str__(self) -> str:
        return f"pruned before {self.pruned_before}"


class RedemptionCode(dj.Model):
    """A one-time code worth ``amount`` µUSD. Kept in clear: operators export
    batches as CSV to hand out. Redeemed exactly once (services.redeem)."""

    code = dj.CharField(max_length=32, unique=True, editable=False)
    name = dj.CharField(max_length=128, db_index=True, help_text="The batch this code belongs to.")
    amount = dj.BigIntegerField(validators=[MinValueValidator(1)], help_text="µUSD")
    expires_at = dj.DateTimeField(null=True, blank=True)
    created_by = dj.ForeignKey(User, on_delete=dj.SET_NULL, null=True, blank=True, related_name="+")
    created_at = dj.DateTimeField(auto_now_add=True)
    redeemed_by = dj.ForeignKey(
        User, on_delete=dj.PROTECT, null=True, blank=True, editable=False, related_name="redemptions"
    )
    redeemed_at = dj.DateTimeField(null=True, blank=True, editable=False)

    objects = RedemptionCodeQuerySet.as_manager()

    class Meta:
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

    created_at = dj.DateTimeField(auto_now_add=True, db_index=True)
    service_mode = dj.BooleanField(default=False)
    users_checked = dj.PositiveIntegerField(default=0)
    drifted_users = dj.PositiveIntegerField(default=0, help_text="Balance column differed from the ledger sum.")
    drift = dj.JSONField(
        default=list, blank=True, help_text="[{user_id, username, balance, ledger_sum, drift}] in µUSD."
    )
    usage_drifted_users = dj.PositiveIntegerField(
        default=0, help_text="Users whose charges in the ledger differ from their settled usage."
    )
    usage_drift = dj.JSONField(
        default=list, blank=True, help_text="[{user_id, username, charged, settled, drift}] in µUSD; not auto-fixed."
    )
    hours_checked = dj.PositiveIntegerField(default=0, help_text="Hours of rollups compared with their raw rows.")
    rollup_drifted_hours = dj.PositiveIntegerField(
        default=0, help_text="Hours and days whose rollups differ from what they summarise (raw rows; hours)."
    )
    rollup_drift = dj.JSONField(default=list, blank=True, help_text="[{start, rollups, rows}]; not auto-fixed.")
    budget_drifted = dj.PositiveIntegerField(
        default=0, help_text="Budget counters of the current periods that differed from the rollups."
    )
    budget_drift = dj.JSONField(
        default=list,
        blank=True,
        help_text="[{subject, subject_id, period, start, counter, rollups}]; set to the rollups.",
    )
    unrolled_usage = dj.PositiveIntegerField(
        default=0, help_text="Usage rows settled before rollups existed and not yet back-filled (backfill_history)."
    )
    mirrors_checked = dj.PositiveIntegerField(default=0)
    stale_holds_released = dj.PositiveIntegerField(
        default=0, help_text="Holds of requests whose relay process died, given back."
    )
    mirrors_pending = dj.PositiveIntegerField(default=0, help_text="Users with usage still in the stream.")
    mirrors_released = dj.JSONField(
        default=list, blank=True, help_text="[{user_id, mirror, balance}]: mirrors dropped as stale (µUSD)."
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"reconcile #{self.pk} {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def is_clean(self) -> bool:
        return not (self.drifted_users or self.usage_drifted_users or self.rollup_drifted_hours or self.budget_drifted)
