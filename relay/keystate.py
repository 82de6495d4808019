"""Key-state rules: what an upstream's answer says about the key that sent it.

One module for every provider's error shapes, shared by the relay (passive
health from real traffic) and the Celery probes, so both judge alike:

    active ──429/overloaded──▶ cooling (Retry-After or backoff) ──▶ active
    active ──401/403/invalid key/quota/billing──▶ auto_disabled
    a 4xx the request caused ──▶ no change, whatever its text
    repeated 5xx/timeouts in a window ──▶ cooling (circuit open, backoff)

Operators extend the "disable" rule with their own phrases (admin → Disable
phrases).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from relay.errors import mask_secrets

ACTIVE, COOLING, AUTO_DISABLED, MANUAL_DISABLED = "active", "cooling", "auto_disabled", "manual_disabled"

# Lower-cased phrases (English and the Chinese providers' own wording) that
# mean the key or its account cannot work until a person acts. They are
# matched only in answers that are about the key (see ``judge``): an error
# the request caused may echo any word of the request.
DISABLE_PHRASES: tuple[str, ...] = (
    "invalid api key",
    "incorrect api key",
    "invalid_api_key",
    "api key not valid",
    "invalid x-api-key",
    "api key expired",
    "authentication_error",
    "permission_denied",
    "permission denied",
    "insufficient_quota",
    "insufficient quota",
    "exceeded your current quota",
    "insufficient balance",
    "billing",
    "credit balance is too low",
    "payment required",
    "account is deactivated",
    "account deactivated",
    "account has been deactivated",
    "organization has been disabled",
    "余额不足",
    "欠费",
    "arrearage",
    "令牌已过期",
    "身份验证失败",
    "api key 无效",
    "apikey 无效",
)
# Error codes and types (lower-cased; OpenAI, Anthropic, Gemini's status and
# reason, DashScope, Qianfan, Zhipu) that say the key or its account is at
# fault, whatever the status they come with (Gemini answers a bad key with
# 400 API_KEY_INVALID, DashScope an unpaid account with 400 Arrearage).
KEY_CODES = frozenset(
    {
        "invalid_api_key",
        "api_key_invalid",
        "invalid_key",
        "authentication_error",
        "permission_error",
        "billing_error",
        "permission_denied",
        "unauthenticated",
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "account_deactivated",
        "access_terminated",
        "arrearage",
        "invalidapikey",
        "invalidapikey.invalid",
    }
)
# Errors of these kinds are about the key as much as about the request:
# rate limits, auth, payment. Disable phrases are matched in them.
KEY_STATUSES = frozenset({401, 402, 403, 429})
OVERLOAD_PHRASES = ("overloaded", "server is busy", "too many requests", "rate limit", "ratelimit", "负载")

# Circuit breaker: this many transient failures within the window open it.
BREAKER_FAILURES = 3
BREAKER_WINDOW = 60.0
BACKOFF_BASE = 1.0
BACKOFF_MAX = 300.0
# The longest a key cools on an upstream's Retry-After (ONEPROXY_MAX_COOLDOWN_SECONDS):
# one 429 with "Retry-After: 999999999" must not take a key out for decades.
MAX_COOLDOWN = 300.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """``fault`` is "key" (disable), "cool" (rate limited / overloaded),
    "transient" (5xx/timeout: retry, count toward the breaker) or "request"
    (the caller's own mistake: relay it, the key is fine)."""

    fault: str
    reason: str
    message: str
    retry_after: float | None = None


def error_fields(body: bytes) -> tuple[str, frozenset[str]]:
    """(message, lower-cased codes and types) from OpenAI, Anthropic, Gemini,
    DashScope, Qianfan and Zhipu error bodies; the raw text and no code when
    it is none of them."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:1000], frozenset()
    if not isinstance(data, dict):
        return str(data)[:1000], frozenset()
    err = data.get("error")
    codes: list[object] = []
    if isinstance(err, dict):  # OpenAI, Anthropic, Gemini, Zhipu
        codes += [err.get("code"), err.get("type"), err.get("status")]
        details = err.get("details")
        if isinstance(details, list):  # Gemini: the reason (API_KEY_INVALID) is here
            codes += [d.get("reason") for d in details if isinstance(d, dict)]
        message = str(err.get("message") or "")
    elif isinstance(err, str):
        codes.append(data.get("code"))
        message = err
    elif "message" in data or "error_msg" in data:  # DashScope native, Qianfan v1
        codes += [data.get("code"), data.get("error_code")]
        message = str(data.get("message") or data.get("error_msg"))
    else:
        return body.decode("utf-8", "replace")[:1000], frozenset()
    if isinstance(data.get("type"), str):  # Anthropic: {"type": "error", "error": {...}}
        codes.append(data["type"])
    return message, frozenset(str(c).lower() for c in codes if c not in (None, ""))


def error_text(body: bytes) -> tuple[str, str]:
    """(message, codes as one string) of an error body."""
    message, codes = error_fields(body)
    return message, " ".join(sorted(codes))


def judge(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    secret: str = "",
    extra_phrases: tuple[str, ...] = (),
) -> Verdict:
    """What an error answer says about the key, by status and code first.

    A 4xx other than 401/402/403/429 is the request's fault unless its code
    or type names the key (KEY_CODES): its text may echo anything the client
    sent ("Unrecognized request argument supplied: billing"), so no phrase
    is looked for in it. Phrases (built-in and the operators') are matched
    only in answers about the key: auth, payment and rate-limit statuses.
    """
    message, codes = error_fields(body)
    if secret:
        message = message.replace(secret, "***")
    message = mask_secrets(message)[:1000]
    text = f"{message} {' '.join(sorted(codes))}".lower()
    about_key = not codes.isdisjoint(KEY_CODES)
    if about_key or status in (401, 402, 403):
        return Verdict("key", _disable_reason(status, text), message)
    if status in KEY_STATUSES and any(p in text for p in DISABLE_PHRASES + extra_phrases):
        return Verdict("key", _disable_reason(status, text), message)
    if status == 429 or status == 529 or (status == 503 and any(p in text for p in OVERLOAD_PHRASES)):
        return Verdict("cool", "rate_limited" if status == 429 else "overloaded", message, retry_after(headers))
    if status >= 500 or status == 408:
        return Verdict("transient", f"upstream_{status}", message)
    return Verdict("request", f"upstream_{status}", message)


def _disable_reason(status: int, text: str) -> str:
    if any(w in text for w in ("quota", "balance", "billing", "credit", "余额", "欠费", "arrearage", "payment")):
        return "insufficient_quota"
    if "deactivated" in text or "disabled" in text:
        return "account_deactivated"
    if status == 402 or "payment" in text:
        return "payment_required"
    if status == 403 or "permission" in text:
        return "permission_denied"
    return "invalid_key"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def cooldown(hinted: float | None, streak: int, cap: float = MAX_COOLDOWN) -> float:
    """Seconds to cool a rate-limited key: the upstream's hint, else backoff,
    never more than ``cap``."""
    return min(hinted if hinted is not None else backoff(streak), cap)


def cooling_note(message: str, hinted: float | None, seconds: float) -> str:
    """The transition's message, with the upstream's own Retry-After when it was cut."""
    if hinted is None or hinted <= seconds:
        return message
    return f"{message} (upstream Retry-After {hinted:.0f} s; cooling capped at {seconds:.0f} s)"


def backoff(failures: int) -> float:
    """Exponential cool-down after the n-th consecutive failure (1 s, 2 s, 4 s … 5 min)."""
    return min(BACKOFF_BASE * 2.0 ** max(failures - 1, 0), BACKOFF_MAX)


@dataclass(frozen=True, slots=True)
class Transition:
    """A key's new state, as the relay or a probe decided it."""

    key_id: int
    state: str
    reason: str
    message: str
    changed_at: float
    cooldown_until: float | None = None
    source: str = "relay"


class Breaker:
    """Per-process memory of recent failures per key."""

    def __init__(self, max_cooldown: float = MAX_COOLDOWN) -> None:
        self.max_cooldown = max_cooldown
        self._failures: dict[int, list[float]] = {}
        self._streak: dict[int, int] = {}

    def cool_for(self, key_id: int, hinted: float | None) -> float:
        """Cool-down for a rate-limited key: the upstream's hint, else backoff (capped)."""
        streak = self._streak[key_id] = self._streak.get(key_id, 0) + 1
        return cooldown(hinted, streak, self.max_cooldown)

    def transient(self, key_id: int, now: float) -> float | None:
        """Record a 5xx/timeout; the cool-down if the breaker opens now."""
        recent = [t for t in self._failures.get(key_id, ()) if now - t < BREAKER_WINDOW]
        recent.append(now)
        self._failures[key_id] = recent
        if len(recent) >= BREAKER_FAILURES:
            self._failures[key_id] = []
            return self.cool_for(key_id, None)
        return None

    def success(self, key_id: int) -> None:
        self._streak.pop(key_id, None)
        self._failures.pop(key_id, None)
