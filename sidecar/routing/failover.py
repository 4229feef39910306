"""The attempt loop: where a 429 becomes a failover (SPEC §3).

For one request: match the rule, ask its strategy for candidates, skip the ones that are limited,
try the rest in order — each at most once, never sleeping between them — and record every 429 so
the next request skips that candidate until its limit expires. The loop knows nothing of HTTP
frameworks; both ingresses call `Router.route`.

Telemetry follows along through the protocols of `events`: `route` gets the ingress's
`RequestTrace` (or None) and each upstream request an `AttemptTrace`; a recorded 429 is reported
before the next attempt starts, so it belongs to the attempt started last.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import NoReturn

from sidecar.config.models import RoundRobinStrategy, Rule, WeightedRoundRobinStrategy
from sidecar.dialects.adapt import Exchange, plan_exchange
from sidecar.dialects.continuation import ContinuationFrames
from sidecar.errors import (
    AllCandidatesFailed,
    AllCandidatesLimited,
    NoRouteError,
    RequestError,
    TranslationError,
)
from sidecar.providers.classify import Outcome
from sidecar.providers.client import ProviderClient
from sidecar.providers.ratelimit_headers import parse_rate_limit_hint
from sidecar.routing.attempt import AttemptFailure, run_attempt
from sidecar.routing.circuits import CircuitBreakers
from sidecar.routing.events import FailedOver, Observer, RateLimited, RequestTrace, RequestTracing, Served
from sidecar.routing.exchange import InboundRequest, RoutedResponse
from sidecar.routing.limits import LimitKey, RateLimitTable, decide_limit
from sidecar.routing.resume import Refused, Resumer, SentLedger, open_continuation
from sidecar.routing.strategies import Candidate, Rotations, match_rule, plan
from sidecar.routing.table import Clock, RouteTable
from sidecar.routing.tally import Counters, Tally, may_fit

log = logging.getLogger("detour.routing")

DEFAULT_BACKOFF_BASE_S = 60.0
DEFAULT_MAX_BACKOFF_S = 3600.0
PLAN_CACHE_SIZE = 1024
# Failures worth one more try on the same candidate: a 5xx or a lost connection may be transient,
# while a timeout means a silent provider that should not be asked again in this request.
RETRIABLE = frozenset({"server_error", "connect_error", "stream_error"})
# Failures that count toward a candidate's circuit breaker (429s have their own state).
CIRCUIT_FAILURES = frozenset({"server_error", "connect_error", "stream_error", "timeout"})


class Router:
    def __init__(
        self,
        table: Callable[[], RouteTable | None],
        *,
        limits: RateLimitTable,
        circuits: CircuitBreakers | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observers: Sequence[Observer] = (),
        tracing: RequestTracing | None = None,
    ) -> None:
        self._table = table
        self.limits = limits
        self.circuits = circuits or CircuitBreakers()
        self.rotations = Rotations()
        self.clock = clock or Clock()
        self.counters = Counters()
        self._rng = rng or random.Random()
        self.observers = list(observers)
        self.tracing = tracing  # read by the ingresses, which open one RequestTrace per request

    async def route(self, request: InboundRequest, trace: RequestTrace | None = None) -> RoutedResponse:
        table = self._table()  # one snapshot for the whole request, whatever reloads meanwhile
        if table is None:
            raise RequestError("no routing config is loaded yet", status=503)
        if trace is not None:
            trace.on_request(request)
        rule = match_rule(table.rules, request.model)
        if rule is None:
            raise NoRouteError(request.model)
        max_wait = getattr(rule.strategy, "max_wait_for_retry_after_secs", 0.0)
        attempts = 0
        while True:
            tally = Tally(attempts=attempts, trace=trace)
            response = await self._one_pass(request, table, rule, tally)
            if response is not None:
                return response
            attempts = tally.attempts
            if tally.overflow is not None and all(
                reason.endswith("context_length") for reason in tally.failures
            ):
                candidate, failure, exchange = tally.overflow
                return self._client_error(candidate, failure, attempts, exchange)
            wait = self._worth_waiting(tally, max_wait)
            if wait is None:
                self._exhausted(tally)
            # Every candidate is limited and the soonest comes back within the rule's patience.
            await self.clock.sleep(wait)
            max_wait = 0.0  # wait at most once per request

    async def _one_pass(
        self, request: InboundRequest, table: RouteTable, rule: Rule, tally: Tally
    ) -> RoutedResponse | None:
        candidates = self._candidates(rule, request.model, table)
        resumer = (
            self._resumer(request, table, candidates, tally)
            if rule.resume_streams and request.stream
            else None
        )
        for candidate in candidates:
            if tally.fallbacks_only and not may_fit(candidate, tally):
                continue
            now = self.clock.monotonic()
            until = self.limits.blocked_until(candidate.provider_id, candidate.model, now)
            if until is not None:
                tally.limited_until.append(until)
                continue
            client = table.clients[candidate.provider_id]
            try:
                exchange = self._exchange(request, table, client, candidate)
            except TranslationError as exc:
                log.info("skipping %s for model %s: %s", candidate.provider_id, candidate.model, exc)
                tally.ineligible.append(f"{candidate.provider_id}: {exc}")
                continue
            if not self.circuits.allows(candidate.provider_id, candidate.model, now):
                reopens = self.circuits.reopens_at(candidate.provider_id, candidate.model)
                tally.unavailable_until.append(reopens if reopens is not None else now)
                continue
            if tally.previous is not None:
                self._emit_failover(tally.previous[0], candidate, tally.previous[1], tally.trace)
            tally.tried.add(candidate)
            result = await self._try_candidate(client, candidate, exchange, request, tally, resumer)
            if isinstance(result, RoutedResponse):
                result.attempts = tally.attempts
                self._emit_served(candidate, tally.attempts, candidates[0], tally.trace)
                return result
            if result.outcome is Outcome.CLIENT_ERROR:
                return self._client_error(candidate, result, tally.attempts, exchange)
            if result.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED):
                expiry = self._record_limit(rule.strategy, candidate, result, tally.trace)
                if expiry is not None:
                    tally.limited_until.append(expiry)
                else:
                    tally.told_to_retry_now = True
            else:
                tally.failures.append(f"{candidate.provider_id}: {result.reason}")
                if result.outcome is Outcome.CONTEXT_LENGTH:
                    tally.fallbacks_only = True  # a larger model may fit; the same model never will
                    tally.overflow = tally.overflow or (candidate, result, exchange)
            tally.previous = (candidate, result.reason)
        return None

    def _candidates(self, rule: Rule, model: str, table: RouteTable) -> list[Candidate]:
        if isinstance(rule.strategy, RoundRobinStrategy | WeightedRoundRobinStrategy):
            return plan(rule, model, table.providers, self.rotations)  # rotates: new order each time
        key = (rule.name, model)
        candidates = table.plans.get(key)
        if candidates is None:
            if len(table.plans) >= PLAN_CACHE_SIZE:
                table.plans.clear()  # model names come from clients: never let them grow the cache
            candidates = table.plans[key] = plan(rule, model, table.providers, self.rotations)
        return candidates

    def _exchange(
        self, request: InboundRequest, table: RouteTable, client: ProviderClient, candidate: Candidate
    ) -> Exchange:
        return plan_exchange(
            request.dialect,
            client.dialect,
            body=request.body,
            raw=request.raw,
            requested_model=request.model,
            upstream_model=candidate.model,
            default_max_tokens=table.loaded.config.routing.default_max_tokens,
            now=self.clock.wall(),
            stream=request.stream,
        )

    async def _try_candidate(
        self,
        client: ProviderClient,
        candidate: Candidate,
        exchange: Exchange,
        request: InboundRequest,
        tally: Tally,
        resumer: Resumer | None,
    ) -> RoutedResponse | AttemptFailure:
        """One candidate, with the bounded same-candidate retry for 5xx and lost connections."""
        config = client.config
        probing = self.circuits.is_probing(candidate.provider_id, candidate.model)
        retries_left = 0 if probing else config.max_retries  # a probe is one request, no more
        backoff_s = config.retry_backoff_ms / 1000
        traced = tally.trace
        while True:
            tally.attempts += 1
            trace = traced.start_attempt(client, candidate, request.stream) if traced is not None else None
            try:
                result = await run_attempt(
                    client,
                    candidate,
                    exchange,
                    client_dialect=request.dialect,
                    stream=request.stream,
                    headers_in=request.headers,
                    counters=self.counters,
                    resumer=resumer,
                    trace=trace,
                )
            except BaseException:
                # Cancelled, or a bug: a half-open circuit must not keep its probe slot forever.
                self.circuits.release_probe(candidate.provider_id, candidate.model)
                raise
            if isinstance(result, RoutedResponse):
                self.limits.record_success(candidate.provider_id, candidate.model)
                self.circuits.record_success(candidate.provider_id, candidate.model)
                return result
            if result.reason not in RETRIABLE or retries_left == 0:
                break
            retries_left -= 1
            self.counters.retries += 1
            # Full jitter around a doubling base: concurrent retries do not arrive in lockstep.
            await self.clock.sleep(backoff_s * self._rng.uniform(0.5, 1.5))
            backoff_s *= 2
        if result.reason == "timeout":
            self.counters.timeouts += 1
        if result.reason in CIRCUIT_FAILURES:
            if self.circuits.record_failure(candidate.provider_id, candidate.model, self.clock.monotonic()):
                self.counters.circuit_opens += 1
                log.warning(
                    "circuit of %s / %s opened after repeated failures",
                    candidate.provider_id,
                    candidate.model,
                )
        else:
            self.circuits.release_probe(candidate.provider_id, candidate.model)
        return result

    def _resumer(
        self, request: InboundRequest, table: RouteTable, candidates: list[Candidate], tally: Tally
    ) -> Resumer:
        """Continues a stream that broke after content reached the client, with a candidate this
        request has not tried yet (SPEC §3, `resume_streams`)."""

        async def resume(ledger: SentLedger) -> AsyncIterator[bytes] | None:
            broken = next(iter(tally.tried), None) if len(tally.tried) == 1 else None
            for candidate in candidates:
                now = self.clock.monotonic()
                if candidate in tally.tried or self.limits.blocked_until(
                    candidate.provider_id, candidate.model, now
                ):
                    continue
                client = table.clients[candidate.provider_id]
                try:
                    exchange = self._exchange(request, table, client, candidate)
                except TranslationError:
                    continue
                if not self.circuits.allows(candidate.provider_id, candidate.model, now):
                    continue
                tally.tried.add(candidate)
                frames = ContinuationFrames(
                    request.dialect,
                    model=candidate.model,
                    block_index=ledger.block_index,
                    created=int(self.clock.wall()),
                )
                try:
                    continuation = await open_continuation(
                        client,
                        exchange.upstream_body,
                        request.headers,
                        client_dialect=request.dialect,
                        ledger=ledger,
                        frames=frames,
                    )
                except Refused as exc:
                    self.circuits.release_probe(candidate.provider_id, candidate.model)
                    log.info(
                        "resume refused by %s (%s); the client gets the original error",
                        candidate.provider_id,
                        exc,
                    )
                    return None
                if continuation is None:
                    self.circuits.release_probe(candidate.provider_id, candidate.model)
                    continue
                if broken is not None:
                    self._emit_failover(broken, candidate, "resume", tally.trace)
                return continuation
            return None

        return resume

    def _worth_waiting(self, tally: Tally, max_wait: float) -> float | None:
        if max_wait <= 0 or tally.failures or tally.unavailable_until or not tally.limited_until:
            return None
        wait = min(tally.limited_until) - self.clock.monotonic()
        return max(wait, 0.0) if wait <= max_wait else None

    def _record_limit(
        self, strategy: object, candidate: Candidate, failure: AttemptFailure, trace: RequestTrace | None
    ) -> float | None:
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
        event = RateLimited(
            candidate.provider_id, candidate.model, applied, decision.source, decision.reason.value, quota
        )
        for observer in self.observers:
            observer.on_rate_limited(event)
        if trace is not None:
            trace.on_rate_limited(event)
        return entry.expires_at if entry is not None else None

    def _client_error(
        self,
        candidate: Candidate,
        failure: AttemptFailure,
        attempts: int,
        exchange: Exchange,
    ) -> RoutedResponse:
        """The provider's own 4xx, in the client's dialect, with the provider's reason."""
        status, body = failure.status or 400, failure.body
        if exchange.convert_error is not None:
            status, body = exchange.convert_error(status, body)
        return RoutedResponse(
            status=status,
            content_type="application/json",
            provider_id=candidate.provider_id,
            model=candidate.model,
            attempts=attempts,
            body=body,
        )

    def _exhausted(self, tally: Tally) -> NoReturn:
        now = self.clock.monotonic()
        failed_or_closed = bool(tally.failures or tally.unavailable_until)
        if tally.ineligible and not (failed_or_closed or tally.limited_until or tally.told_to_retry_now):
            reasons = "; ".join(tally.ineligible)
            raise RequestError(f"no provider of this route can serve the request: {reasons}")
        if tally.limited_until and not failed_or_closed:
            raise AllCandidatesLimited(max(min(tally.limited_until) - now, 0.0), tally.attempts)
        if tally.told_to_retry_now and not failed_or_closed:
            # Every provider said "retry now" (retry-after: 0): still a 429, but never a hot loop.
            raise AllCandidatesLimited(1.0, tally.attempts)
        comeback = tally.limited_until + tally.unavailable_until
        retry_after = max(min(comeback) - now, 0.0) if comeback else None
        reasons_list = list(tally.failures)
        if tally.unavailable_until:
            reasons_list.append(f"{len(tally.unavailable_until)} candidate(s) with an open circuit")
        # 502: a provider failed during this request; 503: nothing could be tried, circuits are open.
        status = 502 if tally.failures else 503
        raise AllCandidatesFailed(reasons_list, tally.attempts, retry_after, status=status)

    def _emit_failover(
        self, source: Candidate, target: Candidate, reason: str, trace: RequestTrace | None
    ) -> None:
        if not self.observers and trace is None:
            return
        event = FailedOver(source.provider_id, source.model, target.provider_id, target.model, reason)
        for observer in self.observers:
            observer.on_failed_over(event)
        if trace is not None:
            trace.on_failed_over(event)

    def _emit_served(
        self, candidate: Candidate, attempts: int, first: Candidate, trace: RequestTrace | None
    ) -> None:
        if not self.observers and trace is None:
            return
        event = Served(
            candidate.provider_id, candidate.model, candidate.role.value, attempts, first.provider_id
        )
        for observer in self.observers:
            observer.on_served(event)
        if trace is not None:
            trace.on_served(event)
