"""Cost of a request in integer µUSD, computed once per request.

cost = ceil((Σ tokens_k × price_k + per_request × 1e6 + images × per_image × 1e6
             + audio_ms × per_second × 1e3) × group_mult × team_mult)

The prompt's tokens split into plain input, cache reads (``cached_tokens``,
at the cached-input price: OpenAI's cached tokens and Anthropic's
cache_read_input_tokens alike), cache writes (``cache_write_tokens``,
Anthropic's cache_creation_input_tokens, at the cache-write price) and audio.

Prices are USD per 1M tokens, so tokens × price is already µUSD. Exact
integer arithmetic on the decimals' integer ratios (PriceSnap.units), no
floats; the one rounding is the final ceiling.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from relay.snapshot import PriceSnap


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens: read from a prompt cache
    audio_tokens: int = 0
    cache_write_tokens: int = 0  # of prompt_tokens: written to a prompt cache
    images: int = 0
    # Milliseconds of audio, for models priced by duration (whisper-1 reports
    # {"type": "duration", "seconds": …} instead of tokens).
    audio_ms: int = 0
    estimated: bool = False


def cost_micro(usage: Usage, price: PriceSnap, group_mult: Decimal, team_mult: Decimal) -> int:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    audio = min(usage.audio_tokens, usage.prompt_tokens - cached - written)
    plain_input = usage.prompt_tokens - cached - written - audio
    denominator, (inp, out, cached_in, audio_in, cache_write, per_request, per_image, per_ms) = price.units
    total = (
        plain_input * inp
        + cached * cached_in
        + written * cache_write
        + audio * audio_in
        + usage.completion_tokens * out
        + per_request
        + usage.images * per_image
        + usage.audio_ms * per_ms
    )
    mult_num, mult_den = _multiplier(group_mult, team_mult)
    return -(-total * mult_num // (denominator * mult_den))  # ceiling


@functools.lru_cache(maxsize=1024)
def _multiplier(group_mult: Decimal, team_mult: Decimal) -> tuple[int, int]:
    group_num, group_den = group_mult.as_integer_ratio()
    team_num, team_den = team_mult.as_integer_ratio()
    return group_num * team_num, group_den * team_den


def hold_micro(most: Usage, price: PriceSnap, group_mult: Decimal, team_mult: Decimal) -> int:
    """What to reserve before forwarding: the cost of the most a request can
    use (relay/app.py sizes ``most``: the prompt estimate, the completion cap
    times every multiplier of output, images, audio seconds)."""
    return cost_micro(most, price, group_mult, team_mult)


def charge_micro(cost: int, held: int, free: int) -> int:
    """What settlement charges of a request's real ``cost``, given its hold
    and ``free``, the balance it may use (its hold included: the balance
    less every other request's hold). The real cost is charged, but what it
    takes below zero is capped at this request's own overdraft (``cost -
    held``): money other requests hold is never spent twice, so a balance
    never ends below minus one request's overdraft. The rest is written off."""
    overdraft = max(cost - held, 0)
    return max(0, min(cost, free + overdraft))


def usage_from_openai(data: dict[str, Any] | None) -> Usage | None:
    """Usage from an OpenAI-shaped ``usage`` object (chat, completions,
    embeddings, responses)."""
    if not isinstance(data, dict):
        return None
    if data.get("type") == "duration":  # transcriptions priced by the second (whisper-1)
        seconds = data.get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 <= seconds < 1e7:
            return Usage(audio_ms=math.ceil(seconds * 1000))
        return None
    prompt = data.get("prompt_tokens", data.get("input_tokens"))
    completion = data.get("completion_tokens", data.get("output_tokens", 0))
    if prompt is None and completion is None:
        return None
    details = (
        data.get("prompt_tokens_details") or data.get("input_tokens_details") or data.get("input_token_details") or {}
    )
    if not isinstance(details, dict):
        details = {}
    counts = [_count(v) for v in (prompt, completion, details.get("cached_tokens"), details.get("audio_tokens"))]
    if None in counts:
        return None  # not a usage object we can trust: the caller counts what was delivered
    return Usage(
        prompt_tokens=counts[0],  # type: ignore[arg-type]
        completion_tokens=counts[1],  # type: ignore[arg-type]
        cached_tokens=counts[2],  # type: ignore[arg-type]
        audio_tokens=counts[3],  # type: ignore[arg-type]
    )


def _count(value: object) -> int | None:
    """A token count as an upstream may send it: a non-negative int (or an
    integral float); None when it is anything else."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 1 << 40 else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < 1 << 40:
        return int(value)
    return None


def trailing_usage(body: bytes) -> dict[str, Any] | None:
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
