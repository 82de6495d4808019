"""The relay's live view of key health, and key selection inside a channel.

The snapshot carries each key's state as the database last had it. This
module lays on top what happened since: transitions this process decided
(or, in service mode, heard from other processes over Redis pub/sub). An
overlay entry gives way once a snapshot shows a state written at or after it.
"""

from __future__ import annotations

import itertools
import time
from collections import deque

from relay import keystate
from relay.keystate import Breaker, Transition
from relay.snapshot import ChannelSnap, KeySnap, Snapshot

# Key usage (last used / success / latency) is written in batches this often.
STATS_FLUSH_SECONDS = 5.0


class KeyPool:
    def __init__(self, max_cooldown: float = keystate.MAX_COOLDOWN) -> None:
        self.overlay: dict[int, Transition] = {}
        self.breaker = Breaker(max_cooldown)
        self._cursors: dict[int, itertools.count[int]] = {}
        self._minute: dict[int, deque[tuple[float, int]]] = {}  # key → (time, tokens) this minute
        # key → (last used, last success or None, latency ms) since the last flush
        self.stats: dict[int, tuple[float, float | None, int | None]] = {}

    # --- state ---------------------------------------------------------------

    def apply(self, transition: Transition) -> None:
        current = self.overlay.get(transition.key_id)
        if current is None or current.changed_at <= transition.changed_at:
            self.overlay[transition.key_id] = transition

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Forget overlay entries the database has caught up with (or overtaken)."""
        changed = {k.id: k.state_changed_at for c in snapshot.channels.values() for k in c.keys}
        for key_id, transition in list(self.overlay.items()):
            db_time = changed.get(key_id)
            if db_time is not None and db_time >= transition.changed_at - 0.001:
                del self.overlay[key_id]

    def state_of(self, key: KeySnap) -> tuple[str, float | None]:
        transition = self.overlay.get(key.id)
        if transition is not None:
            return transition.state, transition.cooldown_until
        return key.state, key.cooldown_until

    def usable(self, key: KeySnap, now: float) -> bool:
        state, until = self.state_of(key)
        if state == keystate.COOLING:
            return until is not None and until <= now
        if state != keystate.ACTIVE:
            return False
        return self._has_headroom(key, now)

    def _has_headroom(self, key: KeySnap, now: float) -> bool:
        if key.rpm_limit is None and key.tpm_limit is None:
            return True
        window = self._minute.get(key.id)
        if not window:
            return True
        while window and now - window[0][0] >= 60:
            window.popleft()
        if key.rpm_limit is not None and len(window) >= key.rpm_limit:
            return False
        return key.tpm_limit is None or sum(tokens for _, tokens in window) < key.tpm_limit

    def soonest_cooldown(self, channels: list[ChannelSnap], now: float) -> float | None:
        """Seconds until the first cooling key of these channels is usable again."""
        waits = []
        for channel in channels:
            for key in channel.keys:
                state, until = self.state_of(key)
                if state == keystate.COOLING and until is not None and until > now:
                    waits.append(until - now)
        return min(waits) if waits else None

    # --- selection ---------------------------------------------------------

    def keys_in_order(self, channel: ChannelSnap) -> list[KeySnap]:
        """Usable keys, starting at the next one in rotation (an even spread)."""
        now = time.time()
        if len(channel.keys) == 1:  # the common case: no rotation to do
            return list(channel.keys) if self.usable(channel.keys[0], now) else []
        keys = [k for k in channel.keys if self.usable(k, now)]
        if len(keys) <= 1:
            return keys
        cursor = self._cursors.get(channel.id)
        if cursor is None:
            cursor = self._cursors[channel.id] = itertools.count()
        start = next(cursor) % len(keys)
        return keys[start:] + keys[:start]

    # --- outcomes ----------------------------------------------------------

    def used(self, key: KeySnap, ok: bool, latency_ms: int | None, tokens: int = 0) -> None:
        now = time.time()
        if key.rpm_limit is not None or key.tpm_limit is not None:
            self._minute.setdefault(key.id, deque()).append((now, tokens))
        previous = self.stats.get(key.id)
        last_success = now if ok else (previous[1] if previous else None)
        self.stats[key.id] = (now, last_success, latency_ms if ok else (previous[2] if previous else None))
        if ok:
            self.breaker.success(key.id)

    def take_stats(self) -> dict[int, tuple[float, float | None, int | None]]:
        stats, self.stats = self.stats, {}
        return stats

    def judge(self, key: KeySnap, verdict: keystate.Verdict, source: str = "relay") -> Transition | None:
        """The transition a failed answer causes, if any (already applied here)."""
        now = time.time()
        if verdict.fault == "key":
            transition = Transition(key.id, keystate.AUTO_DISABLED, verdict.reason, verdict.message, now, None, source)
        elif verdict.fault == "cool":
            cool_for = self.breaker.cool_for(key.id, verdict.retry_after)
            message = keystate.cooling_note(verdict.message, verdict.retry_after, cool_for)
            transition = Transition(key.id, keystate.COOLING, verdict.reason, message, now, now + cool_for, source)
        elif verdict.fault == "transient":
            seconds = self.breaker.transient(key.id, now)
            if seconds is None:
                return None
            transition = Transition(
                key.id, keystate.COOLING, "circuit_open", verdict.message, now, now + seconds, source
            )
        else:
            return None
        self.apply(transition)
        return transition
