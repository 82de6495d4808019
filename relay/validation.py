"""The request fields the gateway itself relies on, checked before anything
is held or sent upstream.

The relay routes on ``model``, decides how to answer on ``stream``, asks for
usage through ``stream_options``, sizes the hold from ``max_tokens`` (and its
aliases), ``n``, ``best_of`` and ``messages``. A field of the wrong type there
would be forwarded and misbilled (a ``"stream": "true"`` streamed by the
upstream and billed as a whole answer with no tokens) or fail inside the
relay. Everything else passes through untouched: the upstream judges it.
"""

from __future__ import annotations

from relay.errors import RelayError, bad_request
from relay.i18n import N_, Term

# Output multipliers above this are refused: no provider accepts more, and
# the hold is their product with the completion cap.
MAX_CHOICES = 128
MAX_TOKENS = 10_000_000
CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MESSAGE_ENDPOINTS = frozenset({"chat/completions", "messages", "messages/count_tokens"})


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid(field: str, expected: str, value: object) -> RelayError:
    return bad_request(
        N_("Invalid type for '{field}': expected {expected}, but got {got} instead."),
        params={"field": field, "expected": Term(expected), "got": _type_name(value)},
        param=field,
        code="invalid_type",
    )


def _count(payload: dict[str, object], field: str, maximum: int) -> None:
    value = payload.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, N_("an integer"), value)
    if not 1 <= value <= maximum:
        raise bad_request(
            N_("Invalid '{field}': {value} is outside 1 to {maximum}."),
            param=field,
            code="integer_out_of_range",
            params={"field": field, "value": value, "maximum": maximum},
        )


def validate(endpoint: str, payload: dict[str, object]) -> None:
    """Raise a 400 ``RelayError`` when a field the gateway relies on is wrong."""
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model", N_("a string"), model)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", N_("a boolean"), stream)
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _invalid("stream_options", N_("an object"), options)
        include = options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise _invalid("stream_options.include_usage", N_("a boolean"), include)
    for field in CAP_FIELDS:
        _count(payload, field, MAX_TOKENS)
    _count(payload, "n", MAX_CHOICES)
    _count(payload, "best_of", MAX_CHOICES)
    if endpoint == "messages" and payload.get("max_tokens") is None:
        # Anthropic's API requires it, whichever channel answers.
        raise bad_request("max_tokens: Field required", param="max_tokens", code="missing_max_tokens")
    if endpoint in MESSAGE_ENDPOINTS:
        messages = payload.get("messages")
        if messages is None:
            raise bad_request(N_("Missing required parameter: 'messages'."), param="messages", code="missing_messages")
        if not isinstance(messages, list):
            raise _invalid("messages", N_("an array"), messages)
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid(f"messages[{i}]", N_("an object"), message)
            role = message.get("role")
            if not isinstance(role, str):
                raise _invalid(f"messages[{i}].role", N_("a string"), role)
            content = message.get("content")
            if content is not None and not isinstance(content, str | list):
                raise _invalid(f"messages[{i}].content", N_("a string or an array"), content)
