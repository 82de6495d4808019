"""Strict management API fields both apps use: unknown or read-only input is
a 400, a string is a JSON string, and limits are null or at least 1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


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
