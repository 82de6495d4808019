"""Management API shapes for users, tokens and usage. Amounts are USD strings with 6 decimals."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from billing.models import Group, Team, Token, UsageLog, User
from billing.money import to_micro, to_usd

# Far above any real top-up or cap, far below the µUSD column's 2**63 limit.
MAX_USD = Decimal(1_000_000_000)


class StrictFieldsMixin:
    """Unknown or read-only input fields are a 400, not silently dropped: a typo
    such as "quota" for "quota_usd" must not create an uncapped token, and
    nobody may believe they edited a balance."""

    # Saved alongside the sent fields on PATCH (derived or auto_now columns).
    extra_update_fields: tuple[str, ...] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            errors = {
                name: ["This field is read-only."] if name in fields else ["Unknown field."]
                for name in data
                if name not in fields or fields[name].read_only
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]

    def update(self, instance: Any, validated_data: dict) -> Any:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        # Only the columns the client sent: a full save would write back
        # counters (balance, used, last_used_at) that the relay moved meanwhile.
        instance.save(update_fields=[*validated_data, *self.extra_update_fields])
        return instance


class UsdField(serializers.Field):
    """A USD amount in, integer µUSD stored, a 6-decimal string out."""

    default_error_messages = {
        "invalid": 'Enter a USD amount as a decimal string, e.g. "12.50".',
        "precision": "Use at most 6 decimal places.",
        "negative": "Must not be negative.",
        "not_positive": "Must be greater than zero.",
        "too_large": f"Must be at most {MAX_USD}.",
    }

    def __init__(self, *, positive: bool = False, **kwargs: Any) -> None:
        self.positive = positive
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
        if value < 0:
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


class StringField(serializers.CharField):
    """A JSON string only: CharField alone would quietly turn 5 into "5"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ModelNamesField(serializers.ListField):
    """A list of model names; blanks refused, repeats kept once in order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=StringField(max_length=128), **kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        return list(dict.fromkeys(super().to_internal_value(data)))


def limit_field() -> serializers.IntegerField:
    # 0 would read as "unlimited" to some and "blocked" to others; null is unlimited.
    return serializers.IntegerField(min_value=1, max_value=2**31 - 1, allow_null=True, required=False)


# -- users --------------------------------------------------------------------


class UserSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False)
    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True)
    balance_usd = UsdField(source="balance", read_only=True)

    # role drives is_superuser/is_staff in User.save().
    extra_update_fields = ("is_superuser", "is_staff")

    class Meta:
        model = User
        fields = ["id", "username", "email", "role", "group", "team", "is_active", "date_joined", "balance_usd"]
        read_only_fields = ["id", "username", "email", "date_joined"]


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
            "completion_tokens", "cached_tokens", "cost_usd", "attempts", "status", "latency_ms", "stream",
        ]  # fmt: skip
        read_only_fields = fields
