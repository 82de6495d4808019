"""Holds and settlement: reserve an estimate before forwarding, charge the
real cost after.

Embedded mode (one relay process): ``MemoryLedger`` keeps balances in
memory, seeded from the database and moved by the usage it writes itself.
Service mode: ``RedisLedger`` keeps a per-user balance mirror in Redis; a
hold is one Lua call, settlement (release + charge + queue the usage event
on a Redis stream) is a second one. Relay processes consume the stream into
the database.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Protocol

import orjson
from redis.exceptions import RedisError

from relay.db import DbWorker
from relay.errors import insufficient_quota
from relay.fast_redis import RespClient, RespError
from relay.i18n import N_, Term
from relay.metering import charge_micro
from relay.outage import Outage, store_unavailable
from relay.periods import period_bounds
from relay.ports import Settled, UsageEvent, decode_event, encode_event
from relay.redis_names import RedisNames, Subject
from relay.snapshot import Snapshot, TokenSnap, UserSnap

log = logging.getLogger("oneproxy.relay.ledger")
# What a Redis that is down, frozen or unreachable raises, from either client
# (redis-py's errors are not OSErrors); an error reply (OOM, LOADING) too.
REDIS_DOWN = (OSError, RespError, RedisError)


def _usd(micro: int) -> str:
    return f"${micro / 1_000_000:.6f}"


@dataclass(slots=True)
class Hold:
    user_id: int
    token_id: int
    amount: int
    capped: bool  # the token has a quota, so its used amount is tracked too
    subjects: tuple[Subject, ...] = ()  # budgets this hold counts against
    allow_keys: tuple[str, ...] = ()  # their Redis allowance keys (service mode)
    member: str = ""  # its entry in the Redis hold registry (service mode)
    ref: str = ""  # the member's id, also the key of its "sent" record (service mode)
    segment: int | None = None  # the journal segment of its "sent" record (embedded mode)
    sent_event: UsageEvent | None = None  # that record (embedded mode)


def budgets_of(user: UserSnap) -> list[tuple[Subject, int, str]]:
    """(subject, budget µUSD, period) for the user's and their team's budgets."""
    out: list[tuple[Subject, int, str]] = []
    if user.budget is not None:
        out.append((("user", user.id), user.budget, user.budget_period))
    if user.team_id is not None and user.team_budget is not None:
        out.append((("team", user.team_id), user.team_budget, user.team_budget_period))
    return out


PERIOD_ADJECTIVE = {"day": Term(N_("daily")), "week": Term(N_("weekly")), "month": Term(N_("monthly"))}


def _budget_refusal(subject: Subject, period: str, amount: int, left: int) -> Exception:
    if subject[0] == "user":
        template = N_("Your {period} budget is used up: this request may cost up to {cost}, {left} left this period.")
    else:
        template = N_(
            "Your team's {period} budget is used up: this request may cost up to {cost}, {left} left this period."
        )
    period_word = PERIOD_ADJECTIVE.get(period, period)
    return insufficient_quota(template, {"period": period_word, "cost": _usd(amount), "left": _usd(max(left, 0))})


def _no_balance(amount: int, available: int) -> Exception:
    return insufficient_quota(
        N_("Insufficient balance: this request may cost up to {cost}, available {available}."),
        {"cost": _usd(amount), "available": _usd(available)},
    )


def _no_quota(amount: int, left: int) -> Exception:
    return insufficient_quota(
        N_("Token quota exceeded: this request may cost up to {cost}, the key has {left} left."),
        {"cost": _usd(amount), "left": _usd(left)},
    )


class Ledger(Protocol):
    def on_snapshot(self, snapshot: Snapshot) -> None: ...

    def on_settled(self, events: list[UsageEvent], settled: Settled) -> None:
        """Usage this process queued has reached the database."""

    async def hold(self, user: UserSnap, token: TokenSnap, amount: int) -> Hold:
        """Reserve ``amount`` µUSD against balance, token quota and budgets, or
        raise the 402 that names what is short."""

    async def view(self, user: UserSnap, token: TokenSnap) -> tuple[int, int]:
        """(available balance, token used) in µUSD, as holds see them now."""

    async def settle(self, hold: Hold, event: UsageEvent) -> None:
        """Release the hold, charge ``event.cost`` and queue the usage event."""

    async def release(self, hold: Hold) -> None:
        """Give the hold back: nothing was charged."""

    def sent(self, hold: Hold, event: UsageEvent) -> None:
        """The request is about to go upstream: record it with the hold, so a
        process that dies before settling is charged at the estimate
        (``event``) for what demonstrably left, and released otherwise."""


class MemoryLedger:
    def __init__(self, db: DbWorker) -> None:
        self.db = db
        self._balance: dict[int, int] = {}  # as last read from the database
        self._used: dict[int, int] = {}
        self._held: dict[int, int] = {}
        self._token_held: dict[int, int] = {}
        self._unwritten: dict[int, int] = {}  # charged here, not yet committed
        self._token_unwritten: dict[int, int] = {}
        # Budgets: spent this period as the database had it, plus what was
        # charged here since (written or not) and what is held.
        self._spent: dict[Subject, int] = {}
        self._budget_held: dict[Subject, int] = {}
        self._subjects_of: dict[str, tuple[Subject, ...]] = {}  # request id → subjects, until written
        self._unwritten_cost: dict[str, int] = {}

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self._balance = {uid: u.balance for uid, u in snapshot.users.items()}
        self._used = {t.id: t.used for t in snapshot.tokens.values()}
        # The database's spending this period, plus what is charged but not yet written.
        self._spent = dict(snapshot.spent)
        for request_id, subjects in self._subjects_of.items():
            for subject in subjects:
                self._spent[subject] = self._spent.get(subject, 0) + self._unwritten_cost[request_id]

    def on_settled(self, events: list[UsageEvent], settled: Settled) -> None:
        for event in events:
            # Only events charged here: a queue left by a dead process is
            # already missing from the balances this process loaded.
            if self._unwritten_cost.pop(event.request_id, None) is None:
                continue
            self._unwritten[event.user_id] = self._unwritten.get(event.user_id, 0) - event.cost
            if event.token_id is not None:
                self._token_unwritten[event.token_id] = self._token_unwritten.get(event.token_id, 0) - event.cost
            self._subjects_of.pop(event.request_id, None)
        self._balance.update(settled.balances)
        self._used.update(settled.token_used)

    def available(self, user_id: int) -> int:
        return self._balance.get(user_id, 0) - self._unwritten.get(user_id, 0) - self._held.get(user_id, 0)

    async def hold(self, user: UserSnap, token: TokenSnap, amount: int) -> Hold:
        # No await between checks and writes: the event loop makes this atomic.
        available = self.available(user.id)
        if available < amount:
            raise _no_balance(amount, available)
        capped = token.quota is not None
        if capped:
            left = (
                token.quota  # type: ignore[operator]
                - self._used.get(token.id, 0)
                - self._token_unwritten.get(token.id, 0)
                - self._token_held.get(token.id, 0)
            )
            if left < amount:
                raise _no_quota(amount, left)
        budgets = budgets_of(user)
        for subject, budget, period in budgets:
            left = budget - self._spent.get(subject, 0) - self._budget_held.get(subject, 0)
            if left < amount:
                raise _budget_refusal(subject, period, amount, left)
        if capped:
            self._token_held[token.id] = self._token_held.get(token.id, 0) + amount
        self._held[user.id] = self._held.get(user.id, 0) + amount
        for subject, _, _ in budgets:
            self._budget_held[subject] = self._budget_held.get(subject, 0) + amount
        return Hold(user.id, token.id, amount, capped, tuple(subject for subject, _, _ in budgets))

    async def view(self, user: UserSnap, token: TokenSnap) -> tuple[int, int]:
        return self.available(user.id), self._used.get(token.id, 0) + self._token_unwritten.get(token.id, 0)

    def sent(self, hold: Hold, event: UsageEvent) -> None:
        if hold.segment is None:
            hold.segment = self.db.journal_sent(event)
            hold.sent_event = event

    def _finished(self, hold: Hold, event: UsageEvent | None) -> None:
        """The request settled (``event``) or never left (None): its "sent"
        record is superseded or voided."""
        if hold.segment is not None:
            void = dataclasses.replace(hold.sent_event, kind="void") if event is None and hold.sent_event else None
            self.db.journal_done(hold.segment, void)
            hold.segment = hold.sent_event = None

    async def release(self, hold: Hold) -> None:
        self._give_back(hold)
        self._finished(hold, None)

    def _give_back(self, hold: Hold) -> None:
        self._held[hold.user_id] -= hold.amount
        if hold.capped:
            self._token_held[hold.token_id] -= hold.amount
        for subject in hold.subjects:
            self._budget_held[subject] -= hold.amount

    async def settle(self, hold: Hold, event: UsageEvent) -> None:
        self._give_back(hold)
        cap(event, hold, charge_micro(event.cost, hold.amount, self.available(hold.user_id)))
        self._unwritten[hold.user_id] = self._unwritten.get(hold.user_id, 0) + event.cost
        if event.token_id is not None:
            self._token_unwritten[event.token_id] = self._token_unwritten.get(event.token_id, 0) + event.cost
        self._unwritten_cost[event.request_id] = event.cost
        if hold.subjects:
            for subject in hold.subjects:
                self._spent[subject] = self._spent.get(subject, 0) + event.cost
            self._subjects_of[event.request_id] = hold.subjects
        self.db.submit_usage(event)
        self._finished(hold, event)


def cap(event: UsageEvent, hold: Hold, charged: int) -> None:
    """Settle ``event`` at ``charged`` (relay/metering.charge_micro), and
    report a request that cost more than its hold."""
    event.held = hold.amount
    if event.cost > hold.amount:
        event.written_off = event.cost - charged
        log.warning(
            "request %s cost %s, %s over its hold; charged %s, written off %s",
            event.request_id, _usd(event.cost), _usd(event.cost - hold.amount), _usd(charged), _usd(event.written_off),
        )  # fmt: skip
    elif charged < event.cost:
        event.written_off = event.cost - charged
        log.warning(
            "request %s cost %s within its hold, but other requests' overdrafts left %s to charge; written off %s",
            event.request_id, _usd(event.cost), _usd(charged), _usd(event.written_off),
        )  # fmt: skip
    event.cost = charged


# --- service mode -----------------------------------------------------------

# KEYS: balance, token used, the hold registry, then budget allowances.
# ARGV: amount, quota (-1: none), registry member, now.
# Returns {2} held; {-1} / {-2} / {-3, i} a mirror is missing (seed it);
# {0, available} balance short; {1, left} token quota short; {3, i, left} budget i short.
_HOLD = """
local bal = redis.call('GET', KEYS[1])
if not bal then return {-1} end
local amount = tonumber(ARGV[1])
local quota = tonumber(ARGV[2])
local used = 0
if quota >= 0 then
  used = redis.call('GET', KEYS[2])
  if not used then return {-2} end
  used = tonumber(used)
end
local allow = {}
for i = 4, #KEYS do
  local left = redis.call('GET', KEYS[i])
  if not left then return {-3, i - 3} end
  allow[i] = tonumber(left)
end
if tonumber(bal) < amount then return {0, tonumber(bal)} end
if quota >= 0 and used + amount > quota then return {1, quota - used} end
for i = 4, #KEYS do
  if allow[i] < amount then return {3, i - 3, allow[i]} end
end
redis.call('DECRBY', KEYS[1], amount)
if quota >= 0 then redis.call('INCRBY', KEYS[2], amount) end
for i = 4, #KEYS do redis.call('DECRBY', KEYS[i], amount) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return {2}
"""

# Release the hold, charge the cost and queue the usage event, atomically.
# KEYS: balance, token used, usage stream, hold registry, "sent" records,
# then allowances. ARGV: hold, cost, capped, event payload, registry member,
# its ref (the request settled or never left: its "sent" record goes). A hold that
# reconcile already released as stale is not released twice. What is
# charged is capped as relay/metering.charge_micro says (the same rule,
# here where the balance is); the stream entry carries it as field "c".
# Returns what was charged.
_SETTLE = """
local held = redis.call('ZREM', KEYS[4], ARGV[5])
local back = held == 1 and tonumber(ARGV[1]) or 0
local cost = tonumber(ARGV[2])
local charged = cost
if redis.call('EXISTS', KEYS[1]) == 1 then
  local free = tonumber(redis.call('GET', KEYS[1])) + back
  local over = cost - tonumber(ARGV[1])
  if over < 0 then over = 0 end
  if charged > free + over then charged = free + over end
  if charged < 0 then charged = 0 end
  redis.call('INCRBY', KEYS[1], back - charged)
end
local delta = back - charged
redis.call('HDEL', KEYS[5], ARGV[6])
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], -delta) end
for i = 6, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], delta) end
end
if ARGV[4] ~= '' then redis.call('XADD', KEYS[3], '*', 'e', ARGV[4], 'c', charged) end
return charged
"""


def event_from_entry(fields: list[bytes]) -> UsageEvent:
    """The usage event of a stream entry (flat [name, value, …]), at what
    settlement charged."""
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    event = decode_event(values[b"e"])
    if b"c" in values:
        charged = int(values[b"c"])
        if charged < event.cost:
            event.written_off = event.cost - charged
        event.cost = charged
    return event


# Settle one stale hold (its request's process died). A request recorded as
# sent upstream is charged at the hold's estimate: its usage event goes on
# the stream, the amount stays taken. Any other hold is given back to every
# mirror it was taken from. KEYS: hold registry, "sent" records, usage
# stream. ARGV: member. Returns 0 (already settled), 1 (released) or 2 (charged).
RELEASE_STALE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local h = cjson.decode(ARGV[1])
local sent = redis.call('HGET', KEYS[2], h.r)
if sent then
  redis.call('HDEL', KEYS[2], h.r)
  redis.call('XADD', KEYS[3], '*', 'e', sent, 'c', h.a)
  return 2
end
for _, key in ipairs(h.give) do
  if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, h.a) end
end
if h.u ~= '' and redis.call('EXISTS', h.u) == 1 then redis.call('INCRBY', h.u, -h.a) end
return 1
"""

# Credit a top-up to the mirror only if it exists; a missing mirror is
# seeded from the database, which already has the top-up.
CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""


class RedisLedger:
    """``fast`` (relay/fast_redis.py) carries the two Lua calls every request makes;
    ``redis`` (redis-py) the rare rest: seeding mirrors, views. ``names``
    are the prefixed Redis keys (relay/redis_names.py)."""

    def __init__(self, redis, fast: RespClient, db: DbWorker, names: RedisNames, outage: Outage) -> None:  # type: ignore[no-untyped-def]
        self.redis = redis
        self.db = db
        self.names = names
        # Redis unreachable: one log line per outage, a clean 503 per request.
        self.outage = outage
        self._fast = fast
        self._hold = fast.script(_HOLD)
        self._settle = fast.script(_SETTLE)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        pass  # Redis is the live view; the database only seeds missing mirrors.

    def on_settled(self, events: list[UsageEvent], settled: Settled) -> None:
        pass  # settlement moved the mirrors already, in the same Lua call

    async def _seed(self, user_id: int, token_id: int | None) -> None:
        settled = await self.db.run(self.db.backend.balances, [user_id], [token_id] if token_id else [])
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.names.balance(user_id), settled.balances.get(user_id, 0), nx=True)
        if token_id is not None:
            pipe.set(self.names.used(token_id), settled.token_used.get(token_id, 0), nx=True)
        await pipe.execute()

    async def _seed_allowance(self, key: str, subject: Subject, budget: int, period: str) -> None:
        spent = await self.db.run(self.db.backend.budget_spent, subject[0], subject[1], period)
        _, end = period_bounds(period, time.time())
        await self.redis.set(key, budget - spent, nx=True, ex=max(int(end - time.time()) + 3600, 60))

    async def hold(self, user: UserSnap, token: TokenSnap, amount: int) -> Hold:
        try:
            hold = await self._take(user, token, amount)
        except REDIS_DOWN as exc:
            self.outage.failed(exc)
            raise store_unavailable() from None
        self.outage.ok()
        return hold

    async def _take(self, user: UserSnap, token: TokenSnap, amount: int) -> Hold:
        quota = -1 if token.quota is None else token.quota
        budgets = budgets_of(user)
        now = time.time()
        allow_keys = [
            self.names.allowance(subject, period_bounds(period, now)[0], budget) for subject, budget, period in budgets
        ]
        keys = [self.names.balance(user.id), self.names.used(token.id), self.names.holds, *allow_keys]
        ref = os.urandom(8).hex()
        member = orjson.dumps(
            {
                "r": ref,
                "a": amount,
                "give": [self.names.balance(user.id), *allow_keys],
                "u": self.names.used(token.id) if quota >= 0 else "",
            }
        ).decode()
        for _ in range(3 + len(allow_keys)):
            result = await self._hold(keys=keys, args=[amount, quota, member, time.time()])
            outcome = int(result[0])
            if outcome == 2:
                subjects = tuple(b[0] for b in budgets)
                return Hold(user.id, token.id, amount, quota >= 0, subjects, tuple(allow_keys), member, ref)
            if outcome == 0:
                raise _no_balance(amount, int(result[1]))
            if outcome == 1:
                raise _no_quota(amount, int(result[1]))
            if outcome == 3:
                subject, _, period = budgets[int(result[1]) - 1]
                raise _budget_refusal(subject, period, amount, int(result[2]))
            if outcome == -3:
                subject, budget, period = budgets[int(result[1]) - 1]
                await self._seed_allowance(allow_keys[int(result[1]) - 1], subject, budget, period)
            else:  # seed the balance and, for a capped token, its used amount together
                await self._seed(user.id, token.id if quota >= 0 else None)
        raise RuntimeError("could not seed the balance mirrors")

    async def view(self, user: UserSnap, token: TokenSnap) -> tuple[int, int]:
        try:
            return await self._view(user, token)
        except REDIS_DOWN as exc:
            self.outage.failed(exc)
            raise store_unavailable() from None

    async def _view(self, user: UserSnap, token: TokenSnap) -> tuple[int, int]:
        balance, used = await self.redis.mget(self.names.balance(user.id), self.names.used(token.id))
        if balance is None:
            await self._seed(user.id, token.id)
            balance, used = await self.redis.mget(self.names.balance(user.id), self.names.used(token.id))
        return int(balance or 0), int(used) if used is not None else token.used

    async def _run_settle(self, hold: Hold, cost: int, payload: bytes) -> int:
        keys = [
            self.names.balance(hold.user_id),
            self.names.used(hold.token_id),
            self.names.usage_stream,
            self.names.holds,
            self.names.sent,
            *hold.allow_keys,
        ]
        args = [hold.amount, cost, "1" if hold.capped else "0", payload, hold.member, hold.ref]
        return int(await self._settle(keys=keys, args=args))

    def sent(self, hold: Hold, event: UsageEvent) -> None:
        # Not awaited: it goes out with the next command on the one ordered
        # connection, before this request's settlement, at no round trip.
        self._fast.fire("HSET", self.names.sent, hold.ref, encode_event(event))

    async def release(self, hold: Hold) -> None:
        """Give a hold back. With Redis unreachable the hold stays in the
        registry, and reconcile's stale-hold release settles it later."""
        try:
            await self._run_settle(hold, 0, b"")
        except REDIS_DOWN as exc:
            self.outage.failed(exc)

    async def settle(self, hold: Hold, event: UsageEvent) -> None:
        event.held = hold.amount
        cost = event.cost
        try:
            charged = await self._run_settle(hold, cost, encode_event(event))
        except REDIS_DOWN as exc:
            self.outage.failed(exc)
            raise store_unavailable() from None
        if charged < cost or cost > hold.amount:
            cap(event, hold, charged)  # the log line; the stream entry has it already
