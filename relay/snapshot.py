"""Immutable in-process views of what the relay routes and bills on.

Built off the request path (at start and whenever the config version moves)
by the apps (channels_app/snapshot.py, billing/snapshot.py) and swapped in
whole, so a request always sees one consistent picture.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TokenSnap:
    id: int
    user_id: int
    name: str
    active: bool
    expires_at: float | None  # epoch seconds
    quota: int | None  # µUSD cap; None: none
    used: int  # µUSD charged, as in the database when the snapshot was taken
    models: frozenset[str]  # empty: all
    subnets: tuple[Network, ...]  # empty: all
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    rpd_limit: int | None = None
    concurrency_limit: int | None = None


@dataclass(frozen=True, slots=True)
class UserSnap:
    id: int
    active: bool
    is_operator: bool
    group: str
    group_multiplier: Decimal
    team_id: int | None
    team_multiplier: Decimal
    balance: int  # µUSD, as in the database when the snapshot was taken
    budget: int | None = None  # µUSD per period; None: no budget
    budget_period: str = "month"
    team_budget: int | None = None
    team_budget_period: str = "month"


@dataclass(frozen=True, slots=True)
class KeySnap:
    id: int
    channel_id: int
    secret: str
    state: str
    cooldown_until: float | None = None
    state_changed_at: float = 0.0
    rpm_limit: int | None = None
    tpm_limit: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelSnap:
    id: int
    name: str
    type: str
    protocol: str
    local: bool
    base_url: str
    models: frozenset[str]
    model_mapping: dict[str, str]
    groups: frozenset[str]
    priority: int
    weight: int
    config: dict[str, Any]
    proxy_url: str | None
    include_usage: bool
    connect_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    keys: tuple[KeySnap, ...]
    # Completion tokens a request that sets none is held for, and sent as
    # the cap to upstreams that require one (Anthropic's max_tokens):
    # config "max_tokens", else ONEPROXY_DEFAULT_MAX_TOKENS.
    max_tokens: int = 4096

    def upstream_model(self, model: str) -> str:
        return self.model_mapping.get(model, model)


@dataclass(frozen=True, slots=True)
class PriceSnap:
    """USD per 1M tokens; per_request / per_image / per_second (of audio) in USD."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    audio: Decimal
    per_request: Decimal = Decimal(0)
    per_image: Decimal = Decimal(0)
    per_second: Decimal = Decimal(0)
    # Writing a token to a prompt cache (Anthropic's cache_creation_input_tokens); None: as input.
    cache_write: Decimal | None = None
    # The same prices as exact integers over one denominator, in µUSD per
    # token, per request, per image and per millisecond of audio
    # (relay/metering.py computes with these).
    units: tuple[int, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cache_write is None:
            object.__setattr__(self, "cache_write", self.input)
        assert self.cache_write is not None
        per_token = (self.input, self.output, self.cached_input, self.audio, self.cache_write)
        whole = (self.per_request * 1_000_000, self.per_image * 1_000_000, self.per_second * 1_000)
        ratios = [value.as_integer_ratio() for value in (*per_token, *whole)]
        denominator = math.lcm(*(den for _, den in ratios))
        object.__setattr__(self, "units", (denominator, tuple(num * (denominator // den) for num, den in ratios)))


FREE = PriceSnap(Decimal(0), Decimal(0), Decimal(0), Decimal(0))


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    tokens: dict[str, TokenSnap]  # by SHA-256 of the key
    users: dict[int, UserSnap]
    channels: dict[int, ChannelSnap]
    # (model, channel_type) and (model, "") → price; "*" is the default price.
    prices: dict[tuple[str, str], PriceSnap]
    refuse_unpriced: bool = False
    # Operators' extra "disable the key on this message" phrases, lower-cased.
    disable_phrases: tuple[str, ...] = ()
    # ("user" | "team", id) → µUSD spent in its current budget period, and
    # when the first of those periods ends (the relay reloads then).
    spent: dict[tuple[str, int], int] = field(default_factory=dict)
    next_period_end: float = float("inf")
    # (group, model) → tiers of channels, highest priority first.
    routes: dict[tuple[str, str], tuple[tuple[ChannelSnap, ...], ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        version: int,
        tokens: dict[str, TokenSnap],
        users: dict[int, UserSnap],
        channels: list[ChannelSnap],
        prices: dict[tuple[str, str], PriceSnap],
        refuse_unpriced: bool = False,
        disable_phrases: tuple[str, ...] = (),
        spent: dict[tuple[str, int], int] | None = None,
        next_period_end: float = float("inf"),
    ) -> Snapshot:
        routes: dict[tuple[str, str], dict[int, list[ChannelSnap]]] = {}
        for channel in channels:
            for group in channel.groups:
                for model in channel.models:
                    routes.setdefault((group, model), {}).setdefault(channel.priority, []).append(channel)
        tiers = {
            route: tuple(tuple(by_priority[p]) for p in sorted(by_priority, reverse=True))
            for route, by_priority in routes.items()
        }
        return cls(
            version=version,
            tokens=tokens,
            users=users,
            channels={c.id: c for c in channels},
            prices=prices,
            refuse_unpriced=refuse_unpriced,
            disable_phrases=disable_phrases,
            spent=spent or {},
            next_period_end=next_period_end,
            routes=tiers,
        )

    def price_for(self, model: str, channel: ChannelSnap) -> PriceSnap | None:
        """The model's price on this channel type, else its general price;
        local servers are free unless priced; otherwise the default ("*")."""
        prices = self.prices
        price = prices.get((model, channel.type)) or prices.get((model, ""))
        if price is not None:
            return price
        if channel.local:
            return FREE
        if self.refuse_unpriced:
            return None
        return prices.get(("*", "")) or FREE

    def models_for(self, group: str) -> list[str]:
        return sorted({model for (g, model) in self.routes if g == group})
