"""The shared state's records, keys and merge rules — pure (docs/scale-out.md, "Consistency").

Three kinds of record travel between sidecars, each as one JSON object stored under its own key
with a TTL equal to its expiry, and published on one channel:

- a **limit**: candidate (or whole provider, for an exhausted quota) limited until an absolute
  epoch time. Between two limits of one key the later expiry wins, whoever wrote last — a shorter
  limit never shortens a longer one, here, in Redis (`WRITE_IF_LATER`) and in each sidecar's table.
- a **circuit**: a candidate's circuit breaker opened, until the absolute epoch time it half-opens.
  Like a limit, the later time wins. Only openings travel: an open circuit ends by itself at that
  time (each sidecar then probes on its own), so there is nothing else to tell.
- a **budget**: the remaining quota a provider reported, and when each bucket refills. The later
  sighting wins: the newest report is the truth.

Times on the wire are Unix epoch seconds, so sidecars whose monotonic clocks share nothing compare
them; each converts to its own monotonic clock when it applies a record (`to_local`), so clock
skew between pods shifts an expiry by the skew (docs/scale-out.md, "Clock skew").

Keys name the provider id and the upstream model (percent-encoded, so any model name makes one
unambiguous key) and nothing else: never a credential. Decoding is total: a record that is not
exactly what this module writes is None, never an exception — another version, or anything else
that shares the Redis, may write there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from sidecar.providers.ratelimit_headers import MAX_WAIT_S, WaitSource
from sidecar.routing.budgets import UNDATED_BUDGET_S, Budget, BudgetKey
from sidecar.routing.circuits import CircuitKey
from sidecar.routing.events import RateLimited
from sidecar.routing.limits import LimitEntry, LimitKey, LimitReason

WHOLE_PROVIDER = "*"  # the model part of a provider-wide (quota) limit's key; `quote` never yields it
MAX_NAME_CHARS = 512  # a provider id or model name longer than this is no record of ours
LIMIT, CIRCUIT, BUDGET = "limit", "circuit", "budget"  # the record kinds, and their keys' first part

# Redis-side merge, atomic: write the record only if it beats the one held (a later `until` for a
# limit or a circuit, a later `seen` for a budget; a tie keeps the one held), with an absolute
# expiry (PXAT, Redis ≥ 6.2), and publish it. KEYS[1]: the record's key. ARGV: the record, the field
# compared, its value, the expiry in epoch milliseconds, the channel.
WRITE_IF_LATER = """
local held = redis.call('GET', KEYS[1])
if held then
  local ok, record = pcall(cjson.decode, held)
  if ok and type(record) == 'table' then
    local value = tonumber(record[ARGV[2]])
    if value and value >= tonumber(ARGV[3]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class SharedLimit:
    provider_id: str
    model: str  # the candidate's model; for a quota limit the one that met it (the key ignores it)
    until: float  # epoch seconds
    wait_s: float
    source: WaitSource  # where the sidecar that saw the 429 got its wait from
    reason: LimitReason
    origin: str  # the sidecar that wrote it: its own records echo back and are ignored

    @property
    def whole_provider(self) -> bool:
        return self.reason is LimitReason.QUOTA


@dataclass(frozen=True, slots=True)
class SharedCircuit:
    """A circuit opened on one sidecar: the candidate is skipped everywhere until `until`."""

    provider_id: str
    model: str
    until: float  # epoch seconds: when it half-opens
    origin: str


@dataclass(frozen=True, slots=True)
class SharedBudget:
    provider_id: str
    model: str
    requests: int | None
    requests_until: float | None  # epoch seconds
    tokens: int | None
    tokens_until: float | None
    seen: float  # epoch seconds
    origin: str

    @property
    def until(self) -> float:
        times = [t for t in (self.requests_until, self.tokens_until) if t is not None]
        return max(times) if times else self.seen + UNDATED_BUDGET_S


Record = SharedLimit | SharedCircuit | SharedBudget
Expiring = SharedLimit | SharedCircuit  # records that end at `until` and whose later `until` wins


# --- keys ------------------------------------------------------------------------------------------


def _part(name: str) -> str:
    return quote(name, safe="")


def limit_key(prefix: str, provider_id: str, model: str | None) -> str:
    return f"{prefix}{LIMIT}:{_part(provider_id)}:{WHOLE_PROVIDER if model is None else _part(model)}"


def circuit_key(prefix: str, provider_id: str, model: str) -> str:
    return f"{prefix}{CIRCUIT}:{_part(provider_id)}:{_part(model)}"


def budget_key(prefix: str, provider_id: str, model: str) -> str:
    return f"{prefix}{BUDGET}:{_part(provider_id)}:{_part(model)}"


def key_of(prefix: str, record: Record) -> str:
    if isinstance(record, SharedLimit):
        return limit_key(prefix, record.provider_id, None if record.whole_provider else record.model)
    if isinstance(record, SharedCircuit):
        return circuit_key(prefix, record.provider_id, record.model)
    return budget_key(prefix, record.provider_id, record.model)


def provider_pattern(prefix: str, kind: str, provider_id: str) -> str:
    """A SCAN pattern for one provider's records. The encoded id holds no glob character (`quote`
    leaves only letters, digits, `_.-~` and `%`), but the prefix may: it is escaped."""
    escaped = "".join("\\" + char if char in "*?[]\\" else char for char in prefix)
    return f"{escaped}{kind}:{_part(provider_id)}:*"


def channel(prefix: str) -> str:
    return f"{prefix}events"


# --- the wire ---------------------------------------------------------------------------------------


def encode(record: Record) -> bytes:
    if isinstance(record, SharedLimit):
        fields: dict[str, Any] = {
            "kind": LIMIT,
            "provider": record.provider_id,
            "model": record.model,
            "until": record.until,
            "wait_s": record.wait_s,
            "source": record.source.value,
            "reason": record.reason.value,
            "origin": record.origin,
        }
    elif isinstance(record, SharedCircuit):
        fields = {
            "kind": CIRCUIT,
            "provider": record.provider_id,
            "model": record.model,
            "until": record.until,
            "origin": record.origin,
        }
    else:
        fields = {
            "kind": BUDGET,
            "provider": record.provider_id,
            "model": record.model,
            "requests": record.requests,
            "requests_until": record.requests_until,
            "tokens": record.tokens,
            "tokens_until": record.tokens_until,
            "seen": record.seen,
            "origin": record.origin,
        }
    return orjson.dumps(fields)


def compared(record: Record) -> tuple[str, float]:
    """The field `WRITE_IF_LATER` compares, and its value."""
    return ("seen", record.seen) if isinstance(record, SharedBudget) else ("until", record.until)


def decode(data: bytes | str) -> Record | None:
    try:
        fields = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict):
        return None
    provider, model, origin = (_name(fields.get(name)) for name in ("provider", "model", "origin"))
    if provider is None or model is None or origin is None:
        return None
    kind = fields.get("kind")
    if kind == LIMIT:
        until, wait_s = _time(fields.get("until")), _time(fields.get("wait_s"))
        try:
            source, reason = WaitSource(str(fields.get("source"))), LimitReason(str(fields.get("reason")))
        except ValueError:
            return None
        if until is None or wait_s is None:
            return None
        return SharedLimit(provider, model, until, wait_s, source, reason, origin)
    if kind == CIRCUIT:
        until = _time(fields.get("until"))
        return None if until is None else SharedCircuit(provider, model, until, origin)
    if kind == BUDGET:
        seen = _time(fields.get("seen"))
        requests, tokens = _count(fields.get("requests")), _count(fields.get("tokens"))
        requests_until, tokens_until = _time(fields.get("requests_until")), _time(fields.get("tokens_until"))
        if seen is None or (requests is None and tokens is None):
            return None
        return SharedBudget(provider, model, requests, requests_until, tokens, tokens_until, seen, origin)
    return None


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS else None


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# --- merging into a sidecar -------------------------------------------------------------------------


def later(held: float | None, incoming: float) -> bool:
    """The merge rule of both kinds: the incoming record wins only with a strictly later time."""
    return held is None or incoming > held


def to_local(epoch: float, wall_now: float, monotonic_now: float) -> float:
    """An epoch time on this sidecar's monotonic clock."""
    return monotonic_now + (epoch - wall_now)


def to_epoch(monotonic: float, wall_now: float, monotonic_now: float) -> float:
    return wall_now + (monotonic - monotonic_now)


def limit_from_event(event: RateLimited, wall_now: float, origin: str) -> SharedLimit | None:
    """What a 429 this sidecar recorded tells the others; None for "retry now" (nothing recorded)."""
    if event.wait_s <= 0:
        return None
    until = wall_now + event.wait_s
    return SharedLimit(
        event.provider_id, event.model, until, event.wait_s, event.source, event.reason, origin
    )


def limit_from_entry(
    key: LimitKey, entry: LimitEntry, wall_now: float, mono_now: float, origin: str
) -> SharedLimit:
    """A limit already in this sidecar's table, for the re-sync after a reconnect."""
    until = to_epoch(entry.expires_at, wall_now, mono_now)
    model = WHOLE_PROVIDER if key.model is None else key.model
    return SharedLimit(key.provider_id, model, until, entry.wait_s, entry.source, entry.reason, origin)


def circuit_from_open(
    key: CircuitKey, reopens_at: float, wall_now: float, mono_now: float, origin: str
) -> SharedCircuit:
    """A circuit this sidecar opened (told as it opens, or found open at a re-sync): shared until
    it half-opens — the record's TTL is exactly the time the candidate is skipped."""
    return SharedCircuit(key[0], key[1], to_epoch(reopens_at, wall_now, mono_now), origin)


def adoptable_until(record: Expiring, wall_now: float) -> float | None:
    """The epoch expiry to adopt from a peer's limit or circuit, capped like a provider's own wait (a
    broken clock or writer cannot block a candidate for longer than 48 h; the circuit table caps a
    circuit further, at one `timeout_secs`); None when already past."""
    if record.until <= wall_now:
        return None
    return min(record.until, wall_now + MAX_WAIT_S)


def budget_to_shared(
    key: BudgetKey, budget: Budget, wall_now: float, mono_now: float, origin: str
) -> SharedBudget:
    def epoch(value: float | None) -> float | None:
        return None if value is None else to_epoch(value, wall_now, mono_now)

    return SharedBudget(
        key[0],
        key[1],
        budget.requests,
        epoch(budget.requests_until),
        budget.tokens,
        epoch(budget.tokens_until),
        to_epoch(budget.seen_at, wall_now, mono_now),
        origin,
    )


def budget_from_shared(record: SharedBudget, wall_now: float, mono_now: float) -> Budget:
    def local(value: float | None) -> float | None:
        return None if value is None else to_local(min(value, wall_now + MAX_WAIT_S), wall_now, mono_now)

    seen = to_local(min(record.seen, wall_now), wall_now, mono_now)  # a sighting is never in the future
    return Budget(
        record.requests,
        local(record.requests_until),
        record.tokens,
        local(record.tokens_until),
        seen,
        peer=True,
    )


# --- reconnecting -----------------------------------------------------------------------------------

RECONNECT_BASE_S = 0.1
RECONNECT_CAP_S = 2.0


def reconnect_delay(failures: int, rng: random.Random) -> float:
    """Doubling from 0.1 s up to 2 s, each wait drawn from its upper half: many pods that lost one
    Redis together do not come back in lockstep, and none waits long once it is back."""
    ceiling = min(RECONNECT_CAP_S, RECONNECT_BASE_S * math.pow(2.0, min(max(failures, 1) - 1, 16)))
    return ceiling * rng.uniform(0.5, 1.0)
