"""Cost of a request in integer µUSD, computed once per request.

cost = ceil((Σ tokens_k × price_k + per_request × 1e6) × group_mult × team_mult)

Prices are USD per 1M tokens, so tokens × price is already µUSD. Exact
integer arithmetic on the decimals' integer ratios (PriceSnap.units), no
floats; the one rounding is the final ceiling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

import orjson

from relay.snapshot import PriceSnap


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    audio_tokens: int = 0
    images: int = 0
    estimated: bool = False


def cost_micro(usage: Usage, price: PriceSnap, group_mult: Decimal, team_mult: Decimal) -> int:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    audio = min(usage.audio_tokens, usage.prompt_tokens - cached)
    plain_input = usage.prompt_tokens - cached - audio
    denominator, (inp, out, cached_in, audio_in, per_request, per_image) = price.units
    total = (
        plain_input * inp
        + cached * cached_in
        + audio * audio_in
        + usage.completion_tokens * out
        + per_request
        + usage.images * per_image
    )
    mult_num, mult_den = _multiplier(group_mult, team_mult)
    return -(-total * mult_num // (denominator * mult_den))  # ceiling


@functools.lru_cache(maxsize=1024)
def _multiplier(group_mult: Decimal, team_mult: Decimal) -> tuple[int, int]:
    group_num, group_den = group_mult.as_integer_ratio()
    team_num, team_den = team_mult.as_integer_ratio()
    return group_num * team_num, group_den * team_den


def hold_micro(prompt_estimate: int, max_tokens: int, price: PriceSnap, group_mult: Decimal, team_mult: Decimal) -> int:
    """What to reserve before forwarding: the prompt estimate at the input
    price plus the completion cap at the output price."""
    return cost_micro(Usage(prompt_tokens=prompt_estimate, completion_tokens=max_tokens), price, group_mult, team_mult)


def usage_from_openai(data: dict | None) -> Usage | None:
    """Usage from an OpenAI-shaped ``usage`` object (chat, completions,
    embeddings, responses)."""
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens", data.get("input_tokens"))
    completion = data.get("completion_tokens", data.get("output_tokens", 0))
    if prompt is None and completion is None:
        return None
    details = data.get("prompt_tokens_details") or data.get("input_tokens_details") or {}
    return Usage(
        prompt_tokens=int(prompt or 0),
        completion_tokens=int(completion or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        audio_tokens=int(details.get("audio_tokens") or 0),
    )


def trailing_usage(body: bytes) -> dict | None:
    """The ``usage`` object of a JSON answer whose last top-level member it
    is (as OpenAI and most compatible APIs send it), parsed on its own. An
    embeddings answer runs to megabytes, and parsing all of it to read the
    usage held the event loop for ~18 ms per 3 MB. None when the usage is
    anywhere else: the caller then parses the whole body."""
    at = body.rfind(b'"usage"')
    if at < 0 or not body[:64].lstrip().startswith(b"{"):
        return None
    # A key starts after "{" or ",": this also refuses the end of another
    # key that contains an escaped quote (``"x\"usage"``).
    before = body[max(0, at - 64) : at].rstrip()
    if not before.endswith((b",", b"{")):
        return None
    rest = body[at + 7 :].strip()
    if not rest.startswith(b":") or not rest.endswith(b"}"):
        return None
    # Between the colon and the top-level object's closing brace: in valid
    # JSON this parses as one object only if it is the whole usage value
    # (a later member, or a nesting level, leaves trailing characters).
    value = rest[1:-1].strip()
    if not value.startswith(b"{"):
        return None
    try:
        usage = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return usage if isinstance(usage, dict) else None
