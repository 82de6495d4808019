"""Cost: one formula, integer µUSD, one ceiling per request, no floats."""

from __future__ import annotations

from decimal import Decimal

import orjson

from relay.metering import Usage, cost_micro, hold_micro, trailing_usage, usage_from_openai
from relay.snapshot import PriceSnap

D = Decimal
ONE = D(1)


def price(**kw) -> PriceSnap:
    base = {"input": D("2.5"), "output": D("10"), "cached_input": D("1.25"), "audio": D("40")}
    return PriceSnap(**{**base, **kw})


def test_input_and_output_tokens_at_per_million_prices():
    # 1,000 × $2.50/M + 500 × $10/M = 2,500 + 5,000 µUSD
    assert cost_micro(Usage(prompt_tokens=1000, completion_tokens=500), price(), ONE, ONE) == 7500


def test_cached_tokens_are_part_of_prompt_tokens_at_their_own_price():
    # 600 plain × 2.5 + 400 cached × 1.25 = 1,500 + 500
    assert cost_micro(Usage(prompt_tokens=1000, cached_tokens=400), price(), ONE, ONE) == 2000


def test_audio_tokens_priced_separately():
    # 900 plain × 2.5 + 100 audio × 40 = 2,250 + 4,000
    assert cost_micro(Usage(prompt_tokens=1000, audio_tokens=100), price(), ONE, ONE) == 6250


def test_per_request_and_per_image():
    p = price(input=D(0), output=D(0), per_request=D("0.002"), per_image=D("0.04"))
    assert cost_micro(Usage(images=3), p, ONE, ONE) == 2000 + 120_000


def test_multipliers_then_one_ceiling():
    # 1 token × $0.15/M = 0.15 µUSD; × 1.5 × 1.2 = 0.27 → ceil → 1
    p = price(input=D("0.15"))
    assert cost_micro(Usage(prompt_tokens=1), p, D("1.5"), D("1.2")) == 1
    # 333 × 0.15 = 49.95; × 2 = 99.9 → 100 (rounded once, not per part)
    assert cost_micro(Usage(prompt_tokens=333), p, D(2), ONE) == 100


def test_free_and_zero_usage_cost_nothing():
    assert cost_micro(Usage(), price(), ONE, ONE) == 0
    free = PriceSnap(D(0), D(0), D(0), D(0))
    assert cost_micro(Usage(prompt_tokens=10**6, completion_tokens=10**6), free, ONE, ONE) == 0


def test_result_is_an_int_and_exact_for_large_counts():
    cost = cost_micro(Usage(prompt_tokens=123_456_789, completion_tokens=987_654_321), price(), ONE, ONE)
    assert isinstance(cost, int)
    assert cost == 123_456_789 * 5 // 2 + 1 + 987_654_321 * 10  # 308,641,972.5 → ceil


def test_hold_covers_prompt_estimate_and_completion_cap():
    assert hold_micro(Usage(prompt_tokens=100, completion_tokens=50), price(), ONE, ONE) == 250 + 500


def test_usage_from_openai_shapes():
    chat = usage_from_openai(
        {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}
    )
    assert (chat.prompt_tokens, chat.completion_tokens, chat.cached_tokens) == (10, 5, 4)
    responses = usage_from_openai({"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 1}})
    assert (responses.prompt_tokens, responses.completion_tokens, responses.cached_tokens) == (7, 3, 1)
    assert usage_from_openai(None) is None


def test_integer_arithmetic_matches_the_decimal_formula_exactly():
    import decimal
    import random

    rng = random.Random(7)

    def six_places(high: int) -> Decimal:
        return D(rng.randrange(0, high * 10**6)) / D(10**6)

    with decimal.localcontext(decimal.Context(prec=80)):
        for _ in range(500):
            p = PriceSnap(
                six_places(100), six_places(100), six_places(50), six_places(200), six_places(1), six_places(1)
            )
            group, team = six_places(5) or ONE, six_places(5) or ONE
            usage = Usage(
                prompt_tokens=rng.randrange(0, 10**7),
                completion_tokens=rng.randrange(0, 10**6),
                cached_tokens=rng.randrange(0, 10**6),
                audio_tokens=rng.randrange(0, 10**5),
                images=rng.randrange(0, 4),
            )
            cached = min(usage.cached_tokens, usage.prompt_tokens)
            audio = min(usage.audio_tokens, usage.prompt_tokens - cached)
            total = (
                (usage.prompt_tokens - cached - audio) * p.input
                + cached * p.cached_input
                + audio * p.audio
                + usage.completion_tokens * p.output
                + (p.per_request + usage.images * p.per_image) * 10**6
            )
            expected = int((total * group * team).to_integral_value(rounding=decimal.ROUND_CEILING))
            assert cost_micro(usage, p, group, team) == expected


def test_trailing_usage_reads_the_last_top_level_member_alone():
    usage = {"prompt_tokens": 8, "total_tokens": 8, "prompt_tokens_details": {"cached_tokens": 2}}
    body = orjson.dumps({"object": "list", "data": [{"embedding": [0.1] * 50, "index": 0}], "usage": usage})
    assert trailing_usage(body) == usage
    assert trailing_usage(b'{"id": "x",\n  "usage" :\n {"prompt_tokens": 3} \n}\n') == {"prompt_tokens": 3}


def test_trailing_usage_leaves_every_other_shape_to_a_full_parse():
    for body in (
        b'{"usage": {"prompt_tokens": 3}, "model": "m"}',  # not the last member
        b'{"choices": [{"usage": {"prompt_tokens": 3}}]}',  # nested
        b'{"a": {"usage": {"prompt_tokens": 3}}}',  # nested, last
        b'{"usage": null}',
        b'{"note": "usage"}',
        b'[{"usage": {"prompt_tokens": 3}}]',
        b'{"usage": {"prompt_tokens": 3}',  # truncated
        b"no json at all",
        b'garbage "usage": {"prompt_tokens": 3}}',  # not a JSON object
        # the end of another key, holding an escaped quote; the real usage comes first
        b'{"usage": {"prompt_tokens": 100000}, "x\\"usage": {"prompt_tokens": 1}}',
    ):
        assert trailing_usage(body) is None, body
