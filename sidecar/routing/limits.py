"""Rate-limit state: which candidates are limited, until when, and why (docs/architecture.md §3).

Keyed by candidate — (provider, upstream model) — so a 429 for gpt-4o does not block gpt-4o-mini on
the same key; a quota 429 is keyed by the provider alone and blocks all its models. The table is
bounded: at 90 % of its capacity it purges expired entries, and when still full the entry that
expires soonest gives way (counted), so the newest limit is always recorded.

Pure and synchronous: callers pass `now` (seconds, from an injected clock) and a random source; the
event loop's single thread makes check-then-set safe without locks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from sidecar.providers.ratelimit_headers import MAX_WAIT_S, RateLimitHint, WaitSource

BACKOFF_JITTER = 0.10
PURGE_AT = 0.90


class LimitReason(StrEnum):
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class LimitKey:
    provider_id: str
    model: str | None  # None: the whole provider (quota exhausted)


@dataclass(slots=True)
class LimitEntry:
    expires_at: float
    wait_s: float
    source: WaitSource
    reason: LimitReason
    consecutive: int  # consecutive 429s, kept after expiry so the next backoff doubles
    peer: bool = False  # learned from another sidecar through the shared state (docs/scale-out.md)


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """How a 429 is recorded: `wait_s` 0 means skip for this request only, do not mark limited."""

    wait_s: float
    source: WaitSource
    reason: LimitReason


def backoff_wait(base_s: float, consecutive: int, cap_s: float, rng: random.Random) -> float:
    """base · 2^(n-1) with ±10 % jitter, never above the cap (applied after jitter)."""
    exponent = min(max(consecutive, 1) - 1, 64)
    raw = base_s * math.pow(2.0, exponent)
    jittered = raw * (1.0 + rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
    return min(jittered, cap_s, MAX_WAIT_S)


def decide_limit(
    hint: RateLimitHint | None,
    *,
    quota: bool,
    consecutive: int,
    backoff_base_s: float,
    max_backoff_s: float,
    rng: random.Random,
) -> LimitDecision:
    reason = LimitReason.QUOTA if quota else LimitReason.RATE_LIMIT
    if hint is not None:
        return LimitDecision(hint.wait_s, WaitSource.QUOTA if quota else hint.source, reason)
    if quota:
        # An exhausted account does not refill in a minute; wait the longest backoff the rule allows.
        return LimitDecision(min(max_backoff_s, MAX_WAIT_S), WaitSource.QUOTA, reason)
    wait = backoff_wait(backoff_base_s, consecutive, max_backoff_s, rng)
    return LimitDecision(wait, WaitSource.BACKOFF, reason)


class RateLimitTable:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.evictions = 0
        self._entries: dict[LimitKey, LimitEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def blocked_until(self, provider_id: str, model: str, now: float) -> float | None:
        """When the candidate becomes eligible again, or None if it is eligible now."""
        if not self._entries:
            return None
        latest: float | None = None
        for key in (LimitKey(provider_id, model), LimitKey(provider_id, None)):
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > now:
                latest = entry.expires_at if latest is None else max(latest, entry.expires_at)
        return latest

    def consecutive_after_this(self, key: LimitKey, now: float) -> int:
        """The 429 count n this new 429 makes, for the backoff; a burst of concurrent 429s counts once."""
        entry = self._entries.get(key)
        if entry is None:
            return 1
        return entry.consecutive if entry.expires_at > now else entry.consecutive + 1

    def record(self, key: LimitKey, decision: LimitDecision, now: float) -> LimitEntry | None:
        """Mark the key limited; returns the entry in force, or None for a zero wait."""
        consecutive = self.consecutive_after_this(key, now)
        if decision.wait_s <= 0:
            return None
        expires_at = now + decision.wait_s
        current = self._entries.get(key)
        if current is not None and current.expires_at > now:
            # Concurrent 429s of one burst: keep the longest limit, do not escalate the backoff.
            if expires_at > current.expires_at:
                current.expires_at, current.wait_s, current.source = (
                    expires_at,
                    decision.wait_s,
                    decision.source,
                )
                current.peer = False
            return current
        if current is None:
            self._make_room(now)
        entry = LimitEntry(expires_at, decision.wait_s, decision.source, decision.reason, consecutive)
        self._entries[key] = entry
        return entry

    def adopt(
        self,
        key: LimitKey,
        expires_at: float,
        wait_s: float,
        source: WaitSource,
        reason: LimitReason,
        now: float,
    ) -> bool:
        """A limit another sidecar recorded (docs/scale-out.md): taken when it expires later than
        the one in force, as a peer's; the backoff counter stays this sidecar's own. Whether it was
        taken."""
        current = self._entries.get(key)
        if expires_at <= now or (current is not None and current.expires_at >= expires_at):
            return False
        if current is None:
            self._make_room(now)
            self._entries[key] = LimitEntry(expires_at, wait_s, source, reason, 0, peer=True)
        else:
            current.expires_at, current.wait_s, current.source, current.peer = (
                expires_at,
                wait_s,
                source,
                True,
            )
        return True

    def record_success(self, provider_id: str, model: str) -> None:
        """A success resets the candidate's backoff counter."""
        if self._entries:
            self._entries.pop(LimitKey(provider_id, model), None)

    def clear(self, provider_id: str, model: str | None = None) -> int:
        """Manual override: forget limits of one candidate, or of every model of a provider."""
        doomed = [
            key for key in self._entries if key.provider_id == provider_id and model in (None, key.model)
        ]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def keep_only(self, provider_ids: set[str]) -> None:
        """After a reload: state survives for providers that still exist."""
        for key in [key for key in self._entries if key.provider_id not in provider_ids]:
            del self._entries[key]

    def active(self, now: float) -> Iterator[tuple[LimitKey, LimitEntry]]:
        for key, entry in self._entries.items():
            if entry.expires_at > now:
                yield key, entry

    def active_per_provider(self, providers: Iterable[str], now: float) -> dict[str, int]:
        """Limited entries per provider, each of `providers` included with 0. Safe to call from
        another thread (a metric reader) while the event loop changes the table: a read that
        collides with a change is simply tried again."""
        counts = dict.fromkeys(providers, 0)
        for _ in range(5):
            try:
                keys = [key for key, _ in self.active(now)]
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
            for key in keys:
                counts[key.provider_id] = counts.get(key.provider_id, 0) + 1
            break
        return counts

    def _make_room(self, now: float) -> None:
        if len(self._entries) < self.capacity * PURGE_AT:
            return
        for key in [key for key, entry in self._entries.items() if entry.expires_at <= now]:
            del self._entries[key]
        while len(self._entries) >= self.capacity:
            soonest = min(self._entries, key=lambda key: self._entries[key].expires_at)
            del self._entries[soonest]
            self.evictions += 1
