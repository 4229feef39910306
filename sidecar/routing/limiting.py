"""Turning one 429 into a recorded limit: how long (the provider's hint, else the rule's backoff),
for what (the candidate, or the whole provider for an exhausted quota), and the event that says so.

Kept apart from the attempt loop because it is the one place where headers, rule settings and the
limit table meet; the loop only hands it the failure and emits the event it returns.
"""

from __future__ import annotations

import logging
import random

from sidecar.config.models import RateLimitSettings
from sidecar.providers.classify import Outcome
from sidecar.providers.ratelimit_headers import parse_rate_limit_hint
from sidecar.routing.events import RateLimited
from sidecar.routing.limits import LimitKey, RateLimitTable, decide_limit
from sidecar.routing.policy import AttemptFailure
from sidecar.routing.strategies import Candidate

log = logging.getLogger("detour.routing")


def record_limit(
    limits: RateLimitTable,
    settings: RateLimitSettings,
    candidate: Candidate,
    failure: AttemptFailure,
    *,
    now: float,
    wall: float,
    rng: random.Random,
) -> tuple[float | None, RateLimited]:
    """(when the limit expires — None: skip the candidate for this request only, the event)."""
    quota = failure.outcome is Outcome.QUOTA_EXHAUSTED
    key = LimitKey(candidate.provider_id, None if quota else candidate.model)
    hint = parse_rate_limit_hint(failure.headers, now=wall)
    if hint is not None and hint.excessive:
        log.warning(
            "provider %s asked to wait %.0f s%s",
            candidate.provider_id,
            hint.wait_s,
            " (capped at 48 h)" if hint.capped else "",
        )
    decision = decide_limit(
        hint,
        quota=quota,
        consecutive=limits.consecutive_after_this(key, now),
        backoff_base_s=settings.exponential_backoff_base_secs,
        max_backoff_s=settings.max_backoff_secs,
        rng=rng,
    )
    entry = limits.record(key, decision, now)
    applied = entry.wait_s if entry is not None else 0.0
    # A limit worth knowing about is logged; "retry now" 429s can come every request, so quietly.
    log.log(
        logging.INFO if entry is not None else logging.DEBUG,
        "provider %s model %s rate-limited (%s): waiting %.3f s from %s",
        candidate.provider_id,
        candidate.model,
        decision.reason.value,
        applied,
        decision.source.value,
    )
    event = RateLimited(candidate.provider_id, candidate.model, applied, decision.source, decision.reason)
    return (entry.expires_at if entry is not None else None), event
