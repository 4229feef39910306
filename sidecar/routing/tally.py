"""What one request's pass over its candidates found, what the client gets when nothing answered,
and the router's running totals.

`Tally` collects, per pass, everything the attempt loop needs to decide what the client gets when
no candidate answers (limits, failures, open circuits, a prompt that was too long), as typed
values; `give_up` turns it into the one error the client gets, and renders the texts of that error
(nowhere else). `Counters` are the totals /admin/state shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from sidecar.dialects.exchange_plan import Exchange
from sidecar.errors import AllCandidatesFailed, AllCandidatesLimited, RequestError, TranslationError
from sidecar.providers.classify import Outcome
from sidecar.routing.events import RequestTrace
from sidecar.routing.policy import AttemptFailure
from sidecar.routing.strategies import Candidate


@dataclass
class Counters:
    """Totals since start, shown in /admin/state (telemetry exports the same as metrics)."""

    retries: int = 0
    timeouts: int = 0
    circuit_opens: int = 0
    malformed_events: int = 0  # stream events dropped as unreadable
    malformed_answers: int = 0  # 2xx answers that were no answer (each failed over)


@dataclass
class Tally:
    """What one pass over a rule's candidates found, for deciding what the client gets."""

    limited_until: list[float] = field(default_factory=list)
    failures: list[tuple[Candidate, Outcome]] = field(default_factory=list)
    ineligible: list[tuple[Candidate, TranslationError]] = field(default_factory=list)
    unavailable_until: list[float] = field(default_factory=list)  # open circuits
    attempts: int = 0
    told_to_retry_now: bool = False
    previous: tuple[Candidate, Outcome] | None = None  # the last candidate tried, and how it ended
    fallbacks_only: bool = False
    # The first "prompt too long": its model is never tried again, and if no fallback answers,
    # the client gets this 400 rather than a 502 its SDK would retry in vain.
    overflow: tuple[Candidate, AttemptFailure, Exchange] | None = None
    tried: set[Candidate] = field(default_factory=set)
    trace: RequestTrace | None = None

    @property
    def only_overflowed(self) -> bool:
        """A prompt was too long and nothing else went wrong: the client gets that 400."""
        return self.overflow is not None and all(
            outcome is Outcome.CONTEXT_LENGTH for _, outcome in self.failures
        )


def may_fit(candidate: Candidate, tally: Tally) -> bool:
    """After a prompt was too long: only fallbacks, and never the model it overflowed."""
    overflowed = tally.overflow[0].model if tally.overflow is not None else None
    return candidate.is_fallback and candidate.model != overflowed


def give_up(tally: Tally, now: float) -> NoReturn:
    """No candidate answered: raise what the client gets (a 400, a 429 or a 502/503)."""
    failed_or_closed = bool(tally.failures or tally.unavailable_until)
    if tally.ineligible and not (failed_or_closed or tally.limited_until or tally.told_to_retry_now):
        reasons = "; ".join(f"{candidate.provider_id}: {exc}" for candidate, exc in tally.ineligible)
        raise RequestError(f"no provider of this route can serve the request: {reasons}")
    if tally.limited_until and not failed_or_closed:
        raise AllCandidatesLimited(max(min(tally.limited_until) - now, 0.0), tally.attempts)
    if tally.told_to_retry_now and not failed_or_closed:
        # Every provider said "retry now" (retry-after: 0): still a 429, but never a hot loop.
        raise AllCandidatesLimited(1.0, tally.attempts)
    comeback = tally.limited_until + tally.unavailable_until
    retry_after = max(min(comeback) - now, 0.0) if comeback else None
    reasons_list = [f"{candidate.provider_id}: {outcome.value}" for candidate, outcome in tally.failures]
    if tally.unavailable_until:
        reasons_list.append(f"{len(tally.unavailable_until)} candidate(s) with an open circuit")
    # 502: a provider failed during this request; 503: nothing could be tried, circuits are open.
    status = 502 if tally.failures else 503
    raise AllCandidatesFailed(reasons_list, tally.attempts, retry_after, status=status)
