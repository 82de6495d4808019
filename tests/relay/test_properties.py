"""Property-based tests (hypothesis) of the request validation and the
metering functions: whatever a client or an upstream sends, they answer
within their contract and never raise anything else."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import RelayError
from relay.holds import prompt_estimate
from relay.metering import Usage, charge_micro, cost_micro, hold_micro, trailing_usage, usage_from_openai
from relay.snapshot import PriceSnap
from relay.validation import validate

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "best_of", "messages"]
PAYLOADS = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=6)
ENDPOINTS = st.sampled_from(["chat/completions", "completions", "embeddings", "responses", "moderations"])
PRICES = st.builds(
    PriceSnap,
    input=st.decimals(0, 100, places=6),
    output=st.decimals(0, 100, places=6),
    cached_input=st.decimals(0, 100, places=6),
    audio=st.decimals(0, 100, places=6),
    per_request=st.decimals(0, 1, places=6),
    per_image=st.decimals(0, 1, places=6),
    per_second=st.decimals(0, 1, places=10),
)
COUNTS = st.integers(0, 10**9)
USAGES = st.builds(
    Usage,
    prompt_tokens=COUNTS,
    completion_tokens=COUNTS,
    cached_tokens=COUNTS,
    audio_tokens=COUNTS,
    images=st.integers(0, 100),
    audio_ms=st.integers(0, 10**8),
)
MULTIPLIERS = st.decimals(Decimal("0.01"), 10, places=2)


@settings(max_examples=300, deadline=None)
@given(ENDPOINTS, PAYLOADS)
def test_validation_refuses_with_a_400_or_accepts_what_the_hold_can_size(endpoint, payload):
    try:
        validate(endpoint, payload)
    except RelayError as refusal:
        assert refusal.status == 400 and refusal.param and refusal.code
        return
    # accepted: the fields the gateway reads have the types it relies on
    assert payload.get("stream") in (None, True, False)
    assert isinstance(payload.get("stream_options") or {}, dict)
    for name in ("max_tokens", "n", "best_of"):
        value = payload.get(name)
        assert value is None or (type(value) is int and value >= 1)
    estimate = prompt_estimate(payload, orjson.dumps(payload))
    assert isinstance(estimate, int) and estimate >= 0


@settings(max_examples=300, deadline=None)
@given(USAGES, PRICES, MULTIPLIERS, MULTIPLIERS)
def test_cost_is_a_non_negative_int_and_grows_with_usage(usage, price, group, team):
    cost = cost_micro(usage, price, group, team)
    assert isinstance(cost, int) and cost >= 0
    more = Usage(
        prompt_tokens=usage.prompt_tokens + 1000,
        completion_tokens=usage.completion_tokens + 1000,
        cached_tokens=usage.cached_tokens,
        audio_tokens=usage.audio_tokens,
        images=usage.images + 1,
        audio_ms=usage.audio_ms + 1000,
    )
    assert cost_micro(more, price, group, team) >= cost


@settings(max_examples=300, deadline=None)
@given(COUNTS, COUNTS, COUNTS, PRICES, MULTIPLIERS, MULTIPLIERS)
def test_the_hold_covers_every_usage_within_its_caps(prompt, cap, used, price, group, team):
    held = hold_micro(Usage(prompt_tokens=prompt, completion_tokens=cap), price, group, team)
    within = Usage(prompt_tokens=prompt, completion_tokens=min(used, cap))
    assert cost_micro(within, price, group, team) <= held


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(-(10**12), 10**12))
def test_settlement_never_takes_a_balance_below_one_requests_overdraft(cost, held, free):
    charged = charge_micro(cost, held, free)
    overdraft = max(cost - held, 0)
    assert 0 <= charged <= cost
    # what the balance may use after this settlement: never below minus this request's overdraft
    assert free - charged >= min(-overdraft, free)
    # a request within its hold, with its hold there, is charged in full
    if cost <= held <= free:
        assert charged == cost
    # with money enough for the whole cost, everything is charged
    if free >= cost:
        assert charged == cost


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_usage_from_any_json_is_none_or_non_negative_counts(data):
    usage = usage_from_openai(data if isinstance(data, dict) else {"prompt_tokens": data})
    if usage is not None:
        counts = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.audio_tokens, usage.audio_ms)
        assert all(isinstance(c, int) and c >= 0 for c in counts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | JSON.map(orjson.dumps))
def test_trailing_usage_never_raises_and_agrees_with_a_full_parse(body):
    usage = trailing_usage(body)
    if usage is not None:
        assert isinstance(usage, dict)
        assert orjson.loads(body)["usage"] == usage
