"""What one request's pass over its candidates found, and the router's running totals.

`Tally` collects, per pass, everything the attempt loop needs to decide what the client gets when
no candidate answers (limits, failures, open circuits, a prompt that was too long); `Counters` are
the totals /admin/state shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.dialects.adapt import Exchange
from sidecar.routing.attempt import AttemptFailure
from sidecar.routing.events import RequestTrace
from sidecar.routing.strategies import Candidate, Role


@dataclass
class Counters:
    """Totals since start, shown in /admin/state (telemetry exports the same as metrics)."""

    retries: int = 0
    timeouts: int = 0
    circuit_opens: int = 0
    malformed_events: int = 0


@dataclass
class Tally:
    """What one pass over a rule's candidates found, for deciding what the client gets."""

    limited_until: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ineligible: list[str] = field(default_factory=list)
    unavailable_until: list[float] = field(default_factory=list)  # open circuits
    attempts: int = 0
    told_to_retry_now: bool = False
    previous: tuple[Candidate, str] | None = None
    fallbacks_only: bool = False
    # The first "prompt too long": its model is never tried again, and if no fallback answers,
    # the client gets this 400 rather than a 502 its SDK would retry in vain.
    overflow: tuple[Candidate, AttemptFailure, Exchange] | None = None
    tried: set[Candidate] = field(default_factory=set)
    trace: RequestTrace | None = None


def may_fit(candidate: Candidate, tally: Tally) -> bool:
    """After a prompt was too long: only fallbacks, and never the model it overflowed."""
    overflowed = tally.overflow[0].model if tally.overflow is not None else None
    return candidate.role is Role.FALLBACK and candidate.model != overflowed
