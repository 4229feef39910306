"""Proactive routing on remaining quota (docs/scale-out.md, "Proactive routing"; the strategy option
`min_remaining`, off unless configured).

Providers say with every answer how much of their quota is left (`x-ratelimit-remaining-*`,
`anthropic-ratelimit-*-remaining`) and when it refills. A candidate whose last-seen budget is under
the rule's threshold is tried after the others until that budget's reset, so most 429s never
happen: it is deferred, never skipped — when the others fail it still serves.

The table is keyed by candidate and bounded like the limit table (docs/architecture.md §8). Times
are monotonic seconds from the router's injected clock; the shared state converts them to epoch
times on the wire. Pure and synchronous, like `limits`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from sidecar.config.models import MinRemaining, Rule
from sidecar.providers.ratelimit_headers import parse_remaining
from sidecar.routing.strategies import Candidate
from sidecar.routing.table import Clock

PURGE_AT = 0.90
# A budget whose reset the provider did not say is trusted this long after it was seen: a deferred
# candidate gets few requests, so nothing newer may come to lift it.
UNDATED_BUDGET_S = 60.0
# The cheap estimate of a request's input tokens: about 4 bytes of JSON body per token for English
# text (OpenAI's rule of thumb of ~4 characters a token), erring high for the JSON around it.
BYTES_PER_TOKEN = 4

BudgetKey = tuple[str, str]  # (provider id, upstream model)


@dataclass(frozen=True, slots=True)
class Budget:
    """One candidate's last-seen remaining quota; `*_until` is when that bucket refills."""

    requests: int | None
    requests_until: float | None
    tokens: int | None
    tokens_until: float | None
    seen_at: float
    peer: bool = False  # learned from another sidecar (docs/scale-out.md)

    def expires_at(self) -> float:
        """When nothing of it is worth keeping any more."""
        times = [t for t in (self.requests_until, self.tokens_until) if t is not None]
        return max(times) if times else self.seen_at + UNDATED_BUDGET_S


def estimate_input_tokens(raw_body: bytes) -> int:
    """Bytes / 4: one length read, no tokenizer on the request path (docs/scale-out.md)."""
    return len(raw_body) // BYTES_PER_TOKEN


def low_until(budget: Budget, threshold: MinRemaining, estimate: int, now: float) -> float | None:
    """When `budget` stops being under `threshold` for a request of `estimate` input tokens, or
    None when it is not under it now. A bucket without a reset counts for `UNDATED_BUDGET_S`."""
    undated = budget.seen_at + UNDATED_BUDGET_S
    until: float | None = None
    if threshold.requests is not None and budget.requests is not None:
        refill = budget.requests_until if budget.requests_until is not None else undated
        if refill > now and budget.requests < threshold.requests:
            until = refill
    if threshold.tokens is not None and budget.tokens is not None:
        refill = budget.tokens_until if budget.tokens_until is not None else undated
        if refill > now and budget.tokens - estimate < threshold.tokens:
            until = refill if until is None else max(until, refill)
    return until


def prefer_within_budget(
    candidates: list[Candidate],
    budgets: BudgetTable,
    threshold: MinRemaining,
    estimate: int,
    now: float,
) -> list[Candidate]:
    """The same candidates, those under `threshold` moved behind the others (each group keeps its
    order). The list itself comes back when nothing is low, so the common case allocates nothing."""
    if not budgets:
        return candidates
    low = [c for c in candidates if _is_low(budgets.get((c.provider_id, c.model)), threshold, estimate, now)]
    if not low:
        return candidates
    return [c for c in candidates if c not in low] + low


def _is_low(budget: Budget | None, threshold: MinRemaining, estimate: int, now: float) -> bool:
    return budget is not None and low_until(budget, threshold, estimate, now) is not None


BudgetListener = Callable[[BudgetKey, Budget], None]


class BudgetTable:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.evictions = 0
        self._budgets: dict[BudgetKey, Budget] = {}
        # Hears every budget this sidecar saw itself (the shared state publishes it); never a peer's.
        self.listener: BudgetListener | None = None

    def __len__(self) -> int:
        return len(self._budgets)

    def get(self, key: BudgetKey) -> Budget | None:
        return self._budgets.get(key)

    def record(self, key: BudgetKey, budget: Budget, now: float) -> bool:
        """Keep `budget` unless the one held was seen later (last writer wins; docs/scale-out.md).
        Whether it was kept."""
        current = self._budgets.get(key)
        if current is not None and current.seen_at > budget.seen_at:
            return False
        if current is None:
            self._make_room(now)
        self._budgets[key] = budget
        if self.listener is not None and not budget.peer:
            self.listener(key, budget)
        return True

    def prefer(
        self, candidates: list[Candidate], threshold: MinRemaining | None, raw_body: bytes, now: float
    ) -> list[Candidate]:
        """`prefer_within_budget` for a rule's threshold (None: off) and a request's body."""
        if threshold is None:
            return candidates
        return prefer_within_budget(candidates, self, threshold, estimate_input_tokens(raw_body), now)

    def items(self) -> Iterator[tuple[BudgetKey, Budget]]:
        return iter(list(self._budgets.items()))

    def keep_only(self, provider_ids: set[str]) -> None:
        for key in [key for key in self._budgets if key[0] not in provider_ids]:
            del self._budgets[key]

    def _make_room(self, now: float) -> None:
        if len(self._budgets) < self.capacity * PURGE_AT:
            return
        for key in [key for key, budget in self._budgets.items() if budget.expires_at() <= now]:
            del self._budgets[key]
        while len(self._budgets) >= self.capacity:
            oldest = min(self._budgets, key=lambda key: self._budgets[key].seen_at)
            del self._budgets[oldest]
            self.evictions += 1


class BudgetSink:
    """What an attempt hands an upstream response's headers to while some rule uses `min_remaining`
    (the router passes None otherwise, so the option costs nothing when off)."""

    __slots__ = ("_clock", "table")

    def __init__(self, table: BudgetTable, clock: Clock) -> None:
        self.table = table
        self._clock = clock

    def note(self, candidate: Candidate, headers: Mapping[str, str]) -> None:
        remaining = parse_remaining(headers, now=self._clock.wall())
        if remaining is None:
            return
        now = self._clock.monotonic()
        budget = Budget(
            remaining.requests,
            None if remaining.requests_reset_s is None else now + remaining.requests_reset_s,
            remaining.tokens,
            None if remaining.tokens_reset_s is None else now + remaining.tokens_reset_s,
            now,
        )
        self.table.record((candidate.provider_id, candidate.model), budget, now)


def uses_budgets(rules: Sequence[Rule]) -> bool:
    """Does any rule configure `min_remaining`? (Only then are responses' budget headers read.)"""
    return any(rule.min_remaining is not None for rule in rules)
