"""Management API shapes for channels and their key pools. A key's secret is
accepted on input and never part of any output."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from rest_framework import serializers

from channels_app.models import Channel, ChannelKey
from core import groups
from core.serializers import ModelNamesField, StrictFieldsMixin, StringField, limit_field
from relay.channel_types import CHANNEL_TYPES
from relay.providers import has_adapter, no_adapter_message

PROXY_SCHEMES = ("http", "https", "socks4", "socks5", "socks5h")


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    # Not URLValidator: it refuses TLD-less hosts such as http://vllm:8000/v1 in Docker.
    if value:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise serializers.ValidationError(f"Expected an absolute URL starting with {' or '.join(schemes)}://.")
    return value


def _timeout_field() -> serializers.FloatField:
    return serializers.FloatField(min_value=0.1, max_value=3600, required=False)


class ChannelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    type = serializers.ChoiceField(
        choices=list(CHANNEL_TYPES),
        required=False,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a channel type; use one of: {", ".join(CHANNEL_TYPES)}.'
        },
    )
    models = ModelNamesField(required=False)
    model_mapping = serializers.DictField(child=StringField(max_length=128), required=False)
    groups = serializers.ListField(child=StringField(max_length=64), required=False, allow_empty=False)
    weight = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
    config = serializers.DictField(required=False)
    connect_timeout = _timeout_field()
    first_byte_timeout = _timeout_field()
    idle_timeout = _timeout_field()
    keys = serializers.ListField(
        child=StringField(trim_whitespace=False, allow_blank=True), write_only=True, required=False
    )
    key_count = serializers.SerializerMethodField()
    healthy_key_count = serializers.SerializerMethodField()

    extra_update_fields = ("updated_at",)

    class Meta:
        model = Channel
        fields = [
            "id", "name", "type", "base_url", "models", "model_mapping", "groups", "priority", "weight",
            "status", "config", "test_model", "proxy_url", "include_usage", "connect_timeout",
            "first_byte_timeout", "idle_timeout", "keys", "key_count", "healthy_key_count",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_key_count(self, channel: Channel) -> int:
        # Annotated by the viewset's queryset; counted here for a just-saved channel.
        count = getattr(channel, "key_count", None)
        return count if count is not None else channel.keys.live().count()

    def get_healthy_key_count(self, channel: Channel) -> int:
        count = getattr(channel, "healthy_key_count", None)
        if count is not None:
            return count
        return channel.keys.live().filter(state=ChannelKey.State.ACTIVE).count()

    def validate_base_url(self, value: str) -> str:
        return _check_url(value.strip(), ("http", "https")).rstrip("/")

    def validate_proxy_url(self, value: str) -> str:
        return _check_url(value.strip(), PROXY_SCHEMES)

    def validate_model_mapping(self, value: dict[str, str]) -> dict[str, str]:
        if any(not name.strip() for name in value) or any(not target.strip() for target in value.values()):
            raise serializers.ValidationError("Model names must not be blank.")
        return value

    def validate_groups(self, value: list[str]) -> list[str]:
        names = list(dict.fromkeys(value))
        missing = groups.unknown(names)
        if missing:
            raise serializers.ValidationError(f"No such group: {', '.join(missing)}.")
        return names

    def validate(self, attrs: dict) -> dict:
        if self.instance is not None and "keys" in attrs:
            raise serializers.ValidationError({"keys": ["Add keys with POST /api/channels/{id}/keys/."]})
        channel_type = attrs.get("type", getattr(self.instance, "type", "openai"))
        # No silent misrouting: a type without an adapter is never created,
        # switched to or enabled (a row left from before may stay disabled).
        status = attrs.get("status", getattr(self.instance, "status", Channel.Status.ENABLED))
        changing = self.instance is None or "type" in attrs or status == Channel.Status.ENABLED
        if changing and not has_adapter(channel_type):
            raise serializers.ValidationError({"type": [no_adapter_message(channel_type)]})
        config = attrs.get("config")
        if config is not None and "max_tokens" in config:
            value = config["max_tokens"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise serializers.ValidationError({"config": ["config.max_tokens must be a positive integer."]})
        base_url = attrs.get("base_url", getattr(self.instance, "base_url", ""))
        if not CHANNEL_TYPES[channel_type].default_base_url and not base_url:
            raise serializers.ValidationError({"base_url": [f"Required for {channel_type} channels."]})
        if channel_type == "azure" and "config" in attrs:
            _check_azure_config(attrs["config"])
        return attrs


def _check_azure_config(config: dict[str, Any]) -> None:
    errors = []
    if "api_version" in config and not isinstance(config["api_version"], str):
        errors.append("config.api_version must be a string.")
    deployments = config.get("deployments", {})
    if not isinstance(deployments, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in deployments.items()
    ):
        errors.append("config.deployments must map model names to deployment names.")
    if errors:
        raise serializers.ValidationError({"config": errors})


class ChannelKeySerializer(serializers.ModelSerializer):
    """A pool key as lists show it: masked hint and health, never the secret."""

    class Meta:
        model = ChannelKey
        fields = [
            "id", "channel", "hint", "state", "state_reason", "state_changed_at", "cooldown_until",
            "last_used_at", "last_success_at", "last_error", "last_error_at", "latency_ms",
            "rpm_limit", "tpm_limit", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, key: ChannelKey) -> dict[str, Any]:
        data = super().to_representation(key)
        if data["last_error"]:
            # Upstream error texts sometimes quote the key they refused.
            try:
                data["last_error"] = data["last_error"].replace(key.reveal(), key.hint)
            except InvalidToken:  # encrypted under another ONEPROXY_ENCRYPTION_KEY
                pass
        return data


class KeysAddSerializer(StrictFieldsMixin, serializers.Serializer):
    keys = serializers.ListField(child=StringField(trim_whitespace=False, allow_blank=True), allow_empty=False)


def _operator_state_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=[ChannelKey.State.ACTIVE, ChannelKey.State.MANUAL_DISABLED], required=False)


class KeyUpdateSerializer(StrictFieldsMixin, serializers.Serializer):
    """PATCH of a pool key: ``state`` as lists show it (``status`` is accepted
    as an alias), and its limits. Validated data carry ``state``."""

    state = _operator_state_field()
    status = _operator_state_field()
    rpm_limit = limit_field()
    tpm_limit = limit_field()

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Send at least one of state, rpm_limit, tpm_limit.")
        if "status" in attrs:
            alias = attrs.pop("status")
            if attrs.setdefault("state", alias) != alias:
                raise serializers.ValidationError({"status": ["Differs from state; send one of them."]})
        return attrs
