"""The attempt loop: where a 429 becomes a failover (SPEC §3).

For one request: match the rule, ask its strategy for candidates, skip the ones that are limited,
try the rest in order — each at most once, never sleeping between them — and record every 429 so
the next request skips that candidate until its limit expires. The loop knows nothing of HTTP
frameworks; both ingresses call `Router.route`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import NoReturn

from sidecar.dialects.adapt import plan_exchange
from sidecar.errors import (
    AllCandidatesFailed,
    AllCandidatesLimited,
    NoRouteError,
    RequestError,
    TranslationError,
)
from sidecar.providers.classify import Outcome
from sidecar.providers.ratelimit_headers import parse_rate_limit_hint
from sidecar.routing.attempt import AttemptFailure, run_attempt
from sidecar.routing.events import FailedOver, Observer, RateLimited, Served
from sidecar.routing.exchange import InboundRequest, RoutedResponse
from sidecar.routing.limits import LimitKey, RateLimitTable, decide_limit
from sidecar.routing.strategies import Candidate, Role, Rotations, match_rule, plan
from sidecar.routing.table import Clock, RouteTable

log = logging.getLogger("detour.routing")

DEFAULT_BACKOFF_BASE_S = 60.0
DEFAULT_MAX_BACKOFF_S = 3600.0


class Router:
    def __init__(
        self,
        table: Callable[[], RouteTable],
        *,
        limits: RateLimitTable,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self._table = table
        self.limits = limits
        self.rotations = Rotations()
        self.clock = clock or Clock()
        self._rng = rng or random.Random()
        self.observers = list(observers)

    async def route(self, request: InboundRequest) -> RoutedResponse:
        table = self._table()  # one snapshot for the whole request, whatever reloads meanwhile
        rule = match_rule(table.rules, request.model)
        if rule is None:
            raise NoRouteError(request.model)
        candidates = plan(rule, request.model, dict(table.providers), self.rotations)
        limited_until: list[float] = []
        failures: list[str] = []
        ineligible: list[str] = []
        attempts = 0
        previous: tuple[Candidate, str] | None = None
        fallbacks_only = False
        told_to_retry_now = False
        for candidate in candidates:
            if fallbacks_only and candidate.role is not Role.FALLBACK:
                continue
            until = self.limits.blocked_until(candidate.provider_id, candidate.model, self.clock.monotonic())
            if until is not None:
                limited_until.append(until)
                continue
            client = table.clients[candidate.provider_id]
            try:
                exchange = plan_exchange(
                    request.dialect,
                    client.dialect,
                    body=request.body,
                    raw=request.raw,
                    requested_model=request.model,
                    upstream_model=candidate.model,
                    default_max_tokens=table.loaded.config.routing.default_max_tokens,
                    now=self.clock.wall(),
                )
            except TranslationError as exc:
                log.info("skipping %s for model %s: %s", candidate.provider_id, candidate.model, exc)
                ineligible.append(f"{candidate.provider_id}: {exc}")
                continue
            if previous is not None:
                self._emit_failover(previous[0], candidate, previous[1])
            attempts += 1
            result = await run_attempt(
                client,
                candidate,
                exchange,
                client_dialect=request.dialect,
                stream=request.stream,
                headers_in=request.headers,
            )
            if isinstance(result, RoutedResponse):
                self.limits.record_success(candidate.provider_id, candidate.model)
                result.attempts = attempts
                self._emit_served(candidate, attempts, candidates[0])
                return result
            if result.outcome is Outcome.CLIENT_ERROR:
                return self._client_error(candidate, result, attempts, exchange.convert_error)
            if result.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED):
                expiry = self._record_limit(rule.strategy, candidate, result)
                if expiry is not None:
                    limited_until.append(expiry)
                else:
                    told_to_retry_now = True
            else:
                failures.append(f"{candidate.provider_id}: {result.reason}")
                if result.outcome is Outcome.CONTEXT_LENGTH:
                    fallbacks_only = True  # a larger model may fit; the same model never will
            previous = (candidate, result.reason)
        if not (limited_until or failures or told_to_retry_now) and ineligible:
            raise RequestError("no provider of this route can serve the request: " + "; ".join(ineligible))
        self._exhausted(limited_until, failures, attempts, told_to_retry_now=told_to_retry_now)

    def _record_limit(self, strategy: object, candidate: Candidate, failure: AttemptFailure) -> float | None:
        quota = failure.outcome is Outcome.QUOTA_EXHAUSTED
        key = LimitKey(candidate.provider_id, None if quota else candidate.model)
        now = self.clock.monotonic()
        hint = parse_rate_limit_hint(failure.headers, now=self.clock.wall())
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
            consecutive=self.limits.consecutive_after_this(key, now),
            backoff_base_s=getattr(strategy, "exponential_backoff_base_secs", DEFAULT_BACKOFF_BASE_S),
            max_backoff_s=getattr(strategy, "max_backoff_secs", DEFAULT_MAX_BACKOFF_S),
            rng=self._rng,
        )
        entry = self.limits.record(key, decision, now)
        applied = entry.wait_s if entry is not None else 0.0
        log.info(
            "provider %s model %s rate-limited (%s): waiting %.3f s from %s",
            candidate.provider_id,
            candidate.model,
            decision.reason.value,
            applied,
            decision.source.value,
        )
        event = RateLimited(
            candidate.provider_id, candidate.model, applied, decision.source, decision.reason.value, quota
        )
        for observer in self.observers:
            observer.on_rate_limited(event)
        return entry.expires_at if entry is not None else None

    def _client_error(
        self,
        candidate: Candidate,
        failure: AttemptFailure,
        attempts: int,
        convert_error: Callable[[int, bytes], tuple[int, bytes]] | None,
    ) -> RoutedResponse:
        status, body = failure.status or 400, failure.body
        if convert_error is not None:
            status, body = convert_error(status, body)
        return RoutedResponse(
            status=status,
            content_type="application/json",
            provider_id=candidate.provider_id,
            model=candidate.model,
            attempts=attempts,
            body=body,
        )

    def _exhausted(
        self, limited_until: list[float], failures: list[str], attempts: int, *, told_to_retry_now: bool
    ) -> NoReturn:
        now = self.clock.monotonic()
        if limited_until and not failures:
            raise AllCandidatesLimited(max(min(limited_until) - now, 0.0), attempts)
        if told_to_retry_now and not failures:
            # Every provider said "retry now" (retry-after: 0): still a 429, but never a hot loop.
            raise AllCandidatesLimited(1.0, attempts)
        retry_after = max(min(limited_until) - now, 0.0) if limited_until else None
        raise AllCandidatesFailed(failures, attempts, retry_after)

    def _emit_failover(self, source: Candidate, target: Candidate, reason: str) -> None:
        if not self.observers:
            return
        event = FailedOver(source.provider_id, source.model, target.provider_id, target.model, reason)
        for observer in self.observers:
            observer.on_failed_over(event)

    def _emit_served(self, candidate: Candidate, attempts: int, first: Candidate) -> None:
        if not self.observers:
            return
        event = Served(
            candidate.provider_id, candidate.model, candidate.role.value, attempts, first.provider_id
        )
        for observer in self.observers:
            observer.on_served(event)
