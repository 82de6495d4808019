"""Provider balances: what each key has left, where the provider says so.

One reader per provider API, each written from that provider's public
reference; the channel's type picks it, and ``config["balance_api"]`` may name
another one (or ``"none"``) for OpenAI-compatible resellers:

- ``deepseek``: ``GET /user/balance`` → ``balance_infos[].total_balance`` (USD
  preferred when several currencies are listed)
- ``openrouter``: ``GET /credits`` → ``total_credits - total_usage`` (account);
  a key that may not read it (not a management key) falls back to
  ``GET /key`` → ``limit_remaining`` (that key's own cap)
- ``siliconflow``: ``GET /user/info`` → ``data.totalBalance``
- ``moonshot``: ``GET /users/me/balance`` → ``data.available_balance``
- ``dashboard`` (one-api / new-api style resellers):
  ``GET /dashboard/billing/subscription`` → ``hard_limit_usd`` minus
  ``GET /dashboard/billing/usage`` → ``total_usage`` (in cents)

Balance requests run concurrently with a bound and a timeout per request,
like probes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from django.conf import settings

from relay import keystate
from relay.errors import mask_secrets

log = logging.getLogger("oneproxy.balances")

TIMEOUT = 15.0
SIX_PLACES = Decimal("0.000001")

# Channel type → balance API. `openai` channels pointing at api.openai.com have
# none (OpenAI's billing endpoints need a browser session, not an API key).
BY_TYPE = {
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "siliconflow": "siliconflow",
    "moonshot": "moonshot",
    "openai": "dashboard",
}


class BalanceError(Exception):
    """The provider gave no usable balance; the text is safe to log (masked)."""


@dataclass(frozen=True, slots=True)
class BalanceTarget:
    key_id: int
    channel_id: int
    api: str
    base_url: str
    secret: str
    proxy_url: str | None
    currency: str = ""  # when the API does not say (config "balance_currency")


@dataclass(frozen=True, slots=True)
class Reading:
    key_id: int
    channel_id: int
    balance: Decimal | None
    currency: str = ""
    error: str = ""


def balance_api(channel_type: str, base_url: str, config: dict) -> str | None:
    """Which balance API a channel has, if any."""
    chosen = config.get("balance_api")
    if chosen:
        return None if chosen == "none" else str(chosen)
    api = BY_TYPE.get(channel_type)
    if api == "dashboard" and urlsplit(base_url).hostname == "api.openai.com":
        return None
    return api


def targets(keys) -> list[BalanceTarget]:
    """Balance targets for keys (``select_related("channel")``) whose channel reports one."""
    out = []
    for key in keys:
        channel = key.channel
        api = balance_api(channel.type, channel.effective_base_url, channel.config or {})
        if api is None:
            continue
        if api not in READERS:
            log.error("balance check skipped: channel %s has unknown balance_api %r", channel.pk, api)
            continue
        try:
            secret = key.reveal()
        except Exception:  # noqa: BLE001 - one unreadable key must not stop the run
            log.error("balance check skipped: channel %s key %s cannot be decrypted", channel.pk, key.pk)
            continue
        out.append(
            BalanceTarget(
                key_id=key.pk,
                channel_id=channel.pk,
                api=api,
                base_url=channel.effective_base_url,
                secret=secret,
                proxy_url=channel.proxy_url or None,
                currency=str((channel.config or {}).get("balance_currency") or ""),
            )
        )
    return out


# --- parsers: documented response bodies → (balance, currency) ----------------


def _decimal(value: Any) -> Decimal:
    if value is None or isinstance(value, bool):
        raise BalanceError(f"not a number: {value!r}")
    try:
        # Through str(): a float such as 49.58894 keeps the digits it prints.
        return Decimal(str(value)).quantize(SIX_PLACES)
    except InvalidOperation:
        raise BalanceError(f"not a number: {value!r}") from None


def _field(data: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(data, dict) or name not in data:
            raise BalanceError(f"no {'.'.join(path)} in the answer")
        data = data[name]
    return data


def parse_deepseek(data: Any) -> tuple[Decimal, str]:
    infos = _field(data, "balance_infos")
    if not isinstance(infos, list) or not infos:
        raise BalanceError("no balance_infos in the answer")
    info = next((i for i in infos if isinstance(i, dict) and i.get("currency") == "USD"), infos[0])
    return _decimal(_field(info, "total_balance")), str(info.get("currency") or "")


def parse_openrouter_credits(data: Any) -> tuple[Decimal, str]:
    credits = _decimal(_field(data, "data", "total_credits"))
    return credits - _decimal(_field(data, "data", "total_usage")), "USD"


def parse_openrouter_key(data: Any) -> tuple[Decimal, str]:
    remaining = _field(data, "data", "limit_remaining")
    if remaining is None:
        raise BalanceError("the key has no credit limit and may not read the account's credits")
    return _decimal(remaining), "USD"


def parse_siliconflow(data: Any) -> tuple[Decimal, str]:
    return _decimal(_field(data, "data", "totalBalance")), ""


def parse_moonshot(data: Any) -> tuple[Decimal, str]:
    return _decimal(_field(data, "data", "available_balance")), ""


def parse_dashboard(subscription: Any, usage: Any) -> tuple[Decimal, str]:
    limit = _decimal(_field(subscription, "hard_limit_usd"))
    used_cents = _decimal(_field(usage, "total_usage"))
    return (limit - used_cents / 100).quantize(SIX_PLACES), "USD"


def _currency_by_host(base_url: str) -> str:
    """SiliconFlow and Moonshot answer in yuan on their .cn hosts, in dollars elsewhere."""
    host = urlsplit(base_url).hostname or ""
    return "CNY" if host.endswith(".cn") else "USD"


# --- readers: one HTTP conversation per API ------------------------------------


async def _get(session: aiohttp.ClientSession, target: BalanceTarget, url: str) -> tuple[int, Any]:
    async with session.get(
        url,
        proxy=target.proxy_url,
        headers={"Authorization": f"Bearer {target.secret}", "Accept": "application/json"},
    ) as response:
        body = await response.read()
        if response.status >= 400:
            message, _ = keystate.error_text(body)
            return response.status, mask_secrets(message.replace(target.secret, "***"))[:300]
        try:
            return response.status, orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BalanceError(f"HTTP {response.status}: the answer is not JSON") from None


async def _get_ok(session: aiohttp.ClientSession, target: BalanceTarget, url: str) -> Any:
    status, data = await _get(session, target, url)
    if status >= 400:
        raise BalanceError(f"HTTP {status}: {data}")
    return data


def _root(base_url: str) -> str:
    """DeepSeek serves /user/balance beside /v1, not under it."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


async def read_deepseek(session: aiohttp.ClientSession, target: BalanceTarget) -> tuple[Decimal, str]:
    return parse_deepseek(await _get_ok(session, target, f"{_root(target.base_url)}/user/balance"))


async def read_openrouter(session: aiohttp.ClientSession, target: BalanceTarget) -> tuple[Decimal, str]:
    status, data = await _get(session, target, f"{target.base_url}/credits")
    if status in (401, 403):  # only management keys may read the account's credits
        return parse_openrouter_key(await _get_ok(session, target, f"{target.base_url}/key"))
    if status >= 400:
        raise BalanceError(f"HTTP {status}: {data}")
    return parse_openrouter_credits(data)


async def read_siliconflow(session: aiohttp.ClientSession, target: BalanceTarget) -> tuple[Decimal, str]:
    balance, _ = parse_siliconflow(await _get_ok(session, target, f"{target.base_url}/user/info"))
    return balance, _currency_by_host(target.base_url)


async def read_moonshot(session: aiohttp.ClientSession, target: BalanceTarget) -> tuple[Decimal, str]:
    balance, _ = parse_moonshot(await _get_ok(session, target, f"{target.base_url}/users/me/balance"))
    return balance, _currency_by_host(target.base_url)


async def read_dashboard(session: aiohttp.ClientSession, target: BalanceTarget) -> tuple[Decimal, str]:
    subscription = await _get_ok(session, target, f"{target.base_url}/dashboard/billing/subscription")
    # The usage window resellers accept (one-api's own: the last 100 days).
    today = datetime.now(UTC).date()
    window = f"start_date={today - timedelta(days=99)}&end_date={today + timedelta(days=1)}"
    usage = await _get_ok(session, target, f"{target.base_url}/dashboard/billing/usage?{window}")
    return parse_dashboard(subscription, usage)


READERS = {
    "deepseek": read_deepseek,
    "openrouter": read_openrouter,
    "siliconflow": read_siliconflow,
    "moonshot": read_moonshot,
    "dashboard": read_dashboard,
}


async def _read_one(session: aiohttp.ClientSession, target: BalanceTarget, timeout: float) -> Reading:
    try:
        async with asyncio.timeout(timeout):
            balance, currency = await READERS[target.api](session, target)
        return Reading(target.key_id, target.channel_id, balance, target.currency or currency)
    except BalanceError as exc:
        error = str(exc)
    except TimeoutError:
        error = f"no answer within {timeout:.0f}s"
    except aiohttp.ClientError as exc:
        error = f"cannot reach upstream: {type(exc).__name__}"
    log.warning("balance check failed: channel %s key %s: %s", target.channel_id, target.key_id, error)
    return Reading(target.key_id, target.channel_id, None, error=error)


async def read_all(targets: list[BalanceTarget], *, concurrency: int, timeout: float) -> list[Reading]:
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(trust_env=True) as session:

        async def bounded(target: BalanceTarget) -> Reading:
            async with limit:
                return await _read_one(session, target, timeout)

        return list(await asyncio.gather(*(bounded(t) for t in targets)))


def fetch_balances(targets: list[BalanceTarget], *, timeout: float = TIMEOUT) -> list[Reading]:
    if not targets:
        return []
    return asyncio.run(read_all(targets, concurrency=settings.ONEPROXY_PROBE_CONCURRENCY, timeout=timeout))
