"""Key-state rules: what an upstream's answer says about the key that sent it.

One module for every provider's error shapes, shared by the relay (passive
health from real traffic) and the Celery probes, so both judge alike:

    active ──429/overloaded──▶ cooling (Retry-After or backoff) ──▶ active
    active ──401/403/invalid key/quota/billing──▶ auto_disabled
    repeated 5xx/timeouts in a window ──▶ cooling (circuit open, backoff)

Operators extend the "disable" rule with their own phrases (admin → Disable
phrases).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from relay.errors import mask_secrets

ACTIVE, COOLING, AUTO_DISABLED, MANUAL_DISABLED = "active", "cooling", "auto_disabled", "manual_disabled"

# Lower-cased phrases (English and the Chinese providers' own wording) that
# mean the key or its account cannot work until a person acts.
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
OVERLOAD_PHRASES = ("overloaded", "server is busy", "too many requests", "rate limit", "ratelimit", "负载")

# Circuit breaker: this many transient failures within the window open it.
BREAKER_FAILURES = 3
BREAKER_WINDOW = 60.0
BACKOFF_BASE = 1.0
BACKOFF_MAX = 300.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """``fault`` is "key" (disable), "cool" (rate limited / overloaded),
    "transient" (5xx/timeout: retry, count toward the breaker) or "request"
    (the caller's own mistake: relay it, the key is fine)."""

    fault: str
    reason: str
    message: str
    retry_after: float | None = None


def error_text(body: bytes) -> tuple[str, str]:
    """(message, code) from OpenAI, Anthropic, Gemini, DashScope, Qianfan and
    Zhipu error bodies; the raw text when it is none of them."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:1000], ""
    if not isinstance(data, dict):
        return str(data)[:1000], ""
    err = data.get("error")
    if isinstance(err, dict):  # OpenAI, Anthropic, Gemini, Zhipu
        code = err.get("code") or err.get("type") or err.get("status") or ""
        status = err.get("status") or ""
        return str(err.get("message") or ""), f"{code} {status} {err.get('type') or ''}".strip()
    if isinstance(err, str):
        return err, str(data.get("code") or "")
    if "message" in data or "error_msg" in data:  # DashScope native, Qianfan v1
        return str(data.get("message") or data.get("error_msg")), str(data.get("code") or data.get("error_code") or "")
    return body.decode("utf-8", "replace")[:1000], ""


def judge(
    status: int,
    body: bytes,
    headers,
    secret: str = "",
    extra_phrases: tuple[str, ...] = (),  # type: ignore[no-untyped-def]
) -> Verdict:
    message, code = error_text(body)
    if secret:
        message = message.replace(secret, "***")
    message = mask_secrets(message)[:1000]
    text = f"{message} {code}".lower()
    if status in (401, 403) or any(p in text for p in DISABLE_PHRASES) or any(p in text for p in extra_phrases):
        # A 400 that names a disable phrase is still about the key or account.
        if status != 400 or any(p in text for p in DISABLE_PHRASES + extra_phrases):
            return Verdict("key", _disable_reason(status, text), message)
    if status == 402:
        return Verdict("key", "payment_required", message)
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
    if status == 403 or "permission" in text:
        return "permission_denied"
    return "invalid_key"


def retry_after(headers) -> float | None:  # type: ignore[no-untyped-def]
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


def backoff(failures: int) -> float:
    """Exponential cool-down after the n-th consecutive failure (1 s, 2 s, 4 s … 5 min)."""
    return min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_MAX)


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

    def __init__(self) -> None:
        self._failures: dict[int, list[float]] = {}
        self._streak: dict[int, int] = {}

    def cool_for(self, key_id: int, hinted: float | None) -> float:
        """Cool-down for a rate-limited key: the upstream's hint, else backoff."""
        streak = self._streak[key_id] = self._streak.get(key_id, 0) + 1
        return hinted if hinted is not None else backoff(streak)

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
