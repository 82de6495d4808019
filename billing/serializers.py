"""Management API shapes for users, tokens, usage and redemption codes. Amounts are USD strings with 6 decimals."""

from __future__ import annotations

import ipaddress
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from billing import budgets
from billing.models import BudgetPeriod, Group, RedemptionCode, Team, Token, UsageLog, User
from billing.money import to_micro, to_usd
from billing.services import MAX_CODES_PER_BATCH
from core.serializers import ModelNamesField, StrictFieldsMixin, StringField, limit_field

# Far above any real top-up or cap, far below the µUSD column's 2**63 limit.
MAX_USD = Decimal(1_000_000_000)


class UsdField(serializers.Field):
    """A USD amount in, integer µUSD stored, a 6-decimal string out."""

    default_error_messages = {
        "invalid": 'Enter a USD amount as a decimal string, e.g. "12.50".',
        "precision": "Use at most 6 decimal places.",
        "negative": "Must not be negative.",
        "not_positive": "Must be greater than zero.",
        "zero": "Must not be zero.",
        "too_large": f"Must be at most {MAX_USD}.",
    }

    def __init__(self, *, positive: bool = False, signed: bool = False, **kwargs: Any) -> None:
        # signed: negative amounts allowed, zero refused (an adjustment).
        self.positive = positive
        self.signed = signed
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        # JSON numbers are accepted too; bool is an int in Python but not an amount.
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        try:
            value = Decimal(str(data).strip())
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if abs(value) > MAX_USD:
            self.fail("too_large")
        # Compared exactly: arithmetic would round at Decimal's 28-digit precision.
        if value != value.quantize(Decimal("0.000001")):
            self.fail("precision")
        if self.signed and value == 0:
            self.fail("zero")
        if value < 0 and not self.signed:
            self.fail("negative")
        if self.positive and value == 0:
            self.fail("not_positive")
        return to_micro(value)

    def to_representation(self, value: int) -> str | None:
        return to_usd(value)


class CidrField(serializers.CharField):
    """An IPv4/IPv6 network; stored in canonical form ("10.1.2.3/8" → "10.0.0.0/8")."""

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise serializers.ValidationError(f"{text!r} is not an IP address or CIDR range.") from None


# -- users --------------------------------------------------------------------


class UserSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False)
    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True)
    balance_usd = UsdField(source="balance", read_only=True)
    budget_usd = UsdField(source="budget", allow_null=True, required=False)
    budget_period = serializers.ChoiceField(choices=BudgetPeriod.choices, required=False)

    # role drives is_superuser/is_staff in User.save().
    extra_update_fields = ("is_superuser", "is_staff")

    class Meta:
        model = User
        fields = [
            "id", "username", "email", "role", "group", "team", "is_active", "date_joined", "balance_usd",
            "budget_usd", "budget_period",
        ]  # fmt: skip
        read_only_fields = ["id", "username", "email", "date_joined"]


class MeSerializer(UserSerializer):
    """The caller, with what is left of their budget and their team's this period (UTC)."""

    def to_representation(self, instance: User) -> dict[str, Any]:
        data = super().to_representation(instance)
        now = self.context["now"]
        data.update(_budget_fields("budget", budgets.budget_status(instance, now)))
        team = instance.team
        if team is None:
            data.update(
                {
                    "team_budget_usd": None,
                    "team_budget_period": None,
                    "team_budget_spent_usd": None,
                    "team_budget_remaining_usd": None,
                    "team_budget_resets_at": None,
                }
            )
        else:
            data.update(_budget_fields("team_budget", budgets.budget_status(team, now)))
        return data


def _budget_fields(prefix: str, status: budgets.BudgetStatus) -> dict[str, Any]:
    return {
        f"{prefix}_usd": to_usd(status.budget),
        f"{prefix}_period": status.period,
        f"{prefix}_spent_usd": to_usd(status.spent),
        f"{prefix}_remaining_usd": to_usd(status.remaining),
        f"{prefix}_resets_at": serializers.DateTimeField().to_representation(status.resets_at),
    }


class UserCreateSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False)
    group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False)
    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True)

    class Meta:
        model = User
        fields = ["username", "password", "email", "role", "group", "team"]

    def validate(self, attrs: dict) -> dict:
        password = attrs.get("password")
        if password:
            try:
                password_validation.validate_password(password, User(username=attrs["username"]))
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs


class TopupSerializer(StrictFieldsMixin, serializers.Serializer):
    amount_usd = UsdField(positive=True)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class AdjustSerializer(StrictFieldsMixin, serializers.Serializer):
    amount_usd = UsdField(signed=True)
    note = StringField(max_length=255, help_text="Why; recorded on the ledger entry.")


# -- tokens -------------------------------------------------------------------


class TokenSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), required=False)
    quota_usd = UsdField(source="quota", allow_null=True, required=False)
    used_usd = UsdField(source="used", read_only=True)
    models = ModelNamesField(required=False)
    subnets = serializers.ListField(child=CidrField(), required=False)
    rpm_limit = limit_field()
    tpm_limit = limit_field()
    rpd_limit = limit_field()
    concurrency_limit = limit_field()

    class Meta:
        model = Token
        fields = [
            "id", "name", "user", "key_prefix", "status", "expires_at", "quota_usd", "used_usd",
            "models", "subnets", "rpm_limit", "tpm_limit", "rpd_limit", "concurrency_limit",
            "created_at", "last_used_at",
        ]  # fmt: skip
        read_only_fields = ["id", "key_prefix", "created_at", "last_used_at"]

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.instance is not None:
            # A token's key spends its owner's balance; it never changes hands.
            fields["user"].read_only = True
        return fields


# -- usage --------------------------------------------------------------------


class UsageLogSerializer(serializers.ModelSerializer):
    cost_usd = UsdField(source="cost", read_only=True)
    key_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = UsageLog
        fields = [
            "id", "created_at", "user", "token", "model", "channel", "key_id", "prompt_tokens",
            "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_usd", "attempts", "status",
            "latency_ms", "stream",
        ]  # fmt: skip
        read_only_fields = fields


class UsageSummaryQuerySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=["user", "team", "token", "model", "channel"])


# -- redemption codes -----------------------------------------------------------------


class RedemptionBatchSerializer(StrictFieldsMixin, serializers.Serializer):
    name = StringField(max_length=128)
    count = serializers.IntegerField(min_value=1, max_value=MAX_CODES_PER_BATCH)
    amount_usd = UsdField(positive=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= self.context["now"]:
            raise serializers.ValidationError("Must be in the future.")
        return value


class RedemptionCodeSerializer(serializers.ModelSerializer):
    """A code as listed: the code itself is shown only when the batch is created
    (and in the admin's CSV export), here only its first group."""

    amount_usd = UsdField(source="amount", read_only=True)
    code_hint = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = RedemptionCode
        fields = [
            "id", "name", "code_hint", "amount_usd", "status", "expires_at", "created_at", "created_by",
            "redeemed_by", "redeemed_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_code_hint(self, obj: RedemptionCode) -> str:
        return f"{obj.code[:4]}-…"

    def get_status(self, obj: RedemptionCode) -> str:
        return obj.status_at(self.context["now"])


class RedeemSerializer(StrictFieldsMixin, serializers.Serializer):
    code = StringField(max_length=64)
