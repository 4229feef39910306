"""The router and its attempt loop: where a 429 becomes a failover (docs/architecture.md §3).

For one request: match the rule, take its candidates, skip the ones that are limited, ineligible
or behind an open circuit, and try the rest in order — each at most once, never sleeping between
them. Every attempt ends in an `Outcome`; what the loop does next comes from `policy.POLICY`
alone. A 429 is recorded so the next request skips that candidate until its limit expires. When
nothing answers, `tally.give_up` decides what the client gets. The loop knows nothing of HTTP
frameworks; the ingress calls `Router.route`.

`Router` is the routing state of one process and its whole surface:

- `apply(table)`: a validated config is now in force (from the composition root, `sidecar.app`);
  the limit table and circuits are resized, reconfigured and pruned to its providers, and the
  candidate-plan cache starts over.
- `route(request, trace)`: one request. Raises the 503 "no routing config is loaded yet" (the only
  place it is raised), `NoRouteError`, `AllCandidatesLimited`, `AllCandidatesFailed`.
- `describe_state()` (/admin/state), `active_limits()` (the telemetry gauge), `table`.
- `observe(observer)`, `watch(watcher)` and `clear_limit(provider, model)`: for gRPC
  `Admin.WatchEvents`, health and `Admin.ClearLimit` (docs/grpc.md).
- `limits`, `circuits`, `counters`, `clock`, `tracing`: the state itself, read by the ingress
  (`tracing`), the demo and the tests; nothing outside routing writes it.

Telemetry follows along through the protocols of `events`: `route` gets the ingress's
`RequestTrace` (or None) and each upstream request an `AttemptTrace`; a recorded 429 is reported
before the next attempt starts, so it belongs to the attempt started last.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from sidecar.config.models import RateLimitSettings, RoundRobinStrategy, Rule, WeightedRoundRobinStrategy
from sidecar.dialects.continuation import ContinuationFrames
from sidecar.dialects.exchange_plan import Exchange, plan_exchange
from sidecar.errors import NoRouteError, RequestError, TranslationError
from sidecar.providers.classify import Outcome
from sidecar.providers.client import ProviderClient
from sidecar.routing import admin_state, events
from sidecar.routing.attempt import client_error, run_attempt, stream_response
from sidecar.routing.budgets import BudgetSink, BudgetTable, uses_budgets
from sidecar.routing.circuits import CircuitBreakers
from sidecar.routing.events import Observer, RequestTrace, RequestTracing
from sidecar.routing.exchange import InboundRequest, RoutedResponse
from sidecar.routing.limiting import record_limit
from sidecar.routing.limits import RateLimitTable
from sidecar.routing.policy import POLICY, AttemptFailure, Next
from sidecar.routing.resume import Continuing, SentLedger, continuation_request
from sidecar.routing.strategies import Candidate, Rotations, match_rule, plan
from sidecar.routing.stream import Emitter, Resume, StreamLeg, forwarding
from sidecar.routing.table import Clock, RouteTable
from sidecar.routing.tally import Counters, Tally, give_up, may_fit

log = logging.getLogger("detour.routing")

# Model names come from clients: the plan cache must never grow with them.
PLAN_CACHE_SIZE = 1024


class Router:
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observers: Sequence[Observer] = (),
        tracing: RequestTracing | None = None,
    ) -> None:
        self.limits = RateLimitTable()
        self.budgets = BudgetTable()  # remaining quota, for `min_remaining` (docs/scale-out.md)
        self.circuits = CircuitBreakers()
        self.counters = Counters()
        self.clock = clock or Clock()
        self.tracing = tracing  # read by the ingress, which opens one RequestTrace per request
        self._listeners = events.Listeners(observers)
        self._rng = rng or random.Random()
        self._rotations = Rotations()  # survive reloads while a rule's provider list is the same
        self._table: RouteTable | None = None
        # Candidate lists of the strategies that do not rotate, per (rule, requested model), for
        # the table in force only: a request still on an older table plans without the cache.
        self._plans: dict[tuple[str, str], list[Candidate]] = {}
        # Reads the upstream budget headers only while some rule routes on them (else None: free).
        self._budget_sink: BudgetSink | None = None
        self.shared_state: Callable[[], dict[str, Any]] | None = None  # /admin/state, when shared

    @property
    def table(self) -> RouteTable | None:
        return self._table

    def apply(self, table: RouteTable) -> None:
        """Route new requests with `table`; limits and circuits survive for providers it keeps."""
        routing = table.loaded.config.routing
        providers = set(table.providers)
        self.limits.capacity = routing.rate_limit_table_size
        self.limits.keep_only(providers)
        self.budgets.capacity = routing.rate_limit_table_size
        self.budgets.keep_only(providers)
        self._budget_sink = BudgetSink(self.budgets, self.clock) if uses_budgets(table.rules) else None
        self.circuits.settings = routing.circuit_breaker
        self.circuits.keep_only(providers)
        self._table = table
        self._plans = {}
        self._listeners.config_applied(table.version, table.loaded.source)

    def observe(self, observer: Observer) -> Callable[[], None]:
        """`observer` hears every request's events from now on, until the returned function is called."""
        return self._listeners.observe(observer)

    def watch(self, watcher: events.Watcher) -> Callable[[], None]:
        """`watcher` hears configs applied and limits cleared, until the returned function is called."""
        return self._listeners.watch(watcher)

    def clear_limit(self, provider_id: str, model: str | None = None) -> int:
        """Lift a limit by hand: one candidate's, or with `model` None every limit of the provider
        (its quota included). Returns how many entries were lifted."""
        cleared = self.limits.clear(provider_id, model)
        self._listeners.limit_cleared(events.LimitCleared(provider_id, model, cleared))
        return cleared

    def describe_state(self) -> dict[str, Any]:
        """/admin/state without the reload status (the composition root knows that)."""
        state = admin_state.describe_state(self._table, self.limits, self.clock, self.circuits, self.counters)
        if self.shared_state is not None:
            state["shared_state"] = self.shared_state()
        return state

    def active_limits(self) -> dict[str, int]:
        """Candidates rate-limited now, per configured provider (0 included), for the
        `detour.rate_limit.active` gauge (read on a metric reader's thread)."""
        table = self._table
        providers = table.providers if table is not None else ()
        return self.limits.active_per_provider(providers, self.clock.monotonic())

    async def route(self, request: InboundRequest, trace: RequestTrace | None = None) -> RoutedResponse:
        table = self._table  # one snapshot for the whole request, whatever reloads meanwhile
        if table is None:
            raise RequestError("no routing config is loaded yet", status=503)
        if trace is not None:
            trace.on_request(request)
        rule = match_rule(table.rules, request.model)
        if rule is None:
            raise NoRouteError(request.model)
        candidates = self._candidates(rule, request.model, table)
        if self._budget_sink is not None:  # one check while no rule routes on remaining quota
            candidates = self.budgets.prefer(
                candidates, rule.min_remaining, request.raw, self.clock.monotonic()
            )
        max_wait = rule.rate_limits.max_wait_for_retry_after_secs
        attempts = 0
        slack = 0.0
        while True:
            tally = Tally(attempts=attempts, trace=trace)
            resume = (
                self._resume(request, table, rule, candidates, tally)
                if rule.resume_streams and request.stream
                else None
            )
            response = await self._one_pass(request, table, rule, candidates, tally, resume, slack)
            if response is not None:
                return response
            if tally.only_overflowed and tally.overflow is not None:
                candidate, failure, exchange = tally.overflow
                return client_error(candidate, failure, tally.attempts, exchange)
            wait = self._worth_waiting(tally, max_wait)
            if wait is None:
                give_up(tally, self.clock.monotonic())
            # Every candidate is limited and the soonest comes back within the rule's patience.
            await self.clock.sleep(wait)
            max_wait = 0.0  # wait at most once per request
            # The sleep may end up to one clock tick before the expiry it waited for: a limit
            # expiring that close has passed, or the request would answer 429 "retry after 0 s".
            slack = self.clock.resolution
            attempts = tally.attempts

    async def _one_pass(
        self,
        request: InboundRequest,
        table: RouteTable,
        rule: Rule,
        candidates: list[Candidate],
        tally: Tally,
        resume: Resume | None,
        slack: float,
    ) -> RoutedResponse | None:
        for candidate in candidates:
            if tally.fallbacks_only and not may_fit(candidate, tally):
                continue
            now = self.clock.monotonic()
            until = self.limits.blocked_until(candidate.provider_id, candidate.model, now + slack)
            if until is not None:
                tally.limited_until.append(until)
                continue
            client = table.clients[candidate.provider_id]
            try:
                exchange = self._exchange(request, table, client, candidate)
            except TranslationError as exc:
                log.info("skipping %s for model %s: %s", candidate.provider_id, candidate.model, exc)
                tally.ineligible.append((candidate, exc))
                continue
            if not self.circuits.allows(candidate.provider_id, candidate.model, now):
                reopens = self.circuits.reopens_at(candidate.provider_id, candidate.model)
                tally.unavailable_until.append(reopens if reopens is not None else now)
                continue
            if tally.previous is not None:
                self._listeners.failed_over(tally.previous[0], candidate, tally.previous[1], tally.trace)
            tally.tried.add(candidate)
            emitter = forwarding(exchange, client.dialect, resume is not None) if request.stream else None
            body, convert = exchange.upstream_body, exchange.convert_response
            result = await self._try_candidate(client, candidate, body, emitter, convert, request, tally)
            if isinstance(result, StreamLeg):
                result = stream_response(result, request.dialect, resume)
            if isinstance(result, RoutedResponse):
                result.attempts = tally.attempts
                self._listeners.served(candidate, tally.attempts, candidates[0], tally.trace)
                return result
            policy = POLICY[result.outcome]
            if policy.next is Next.RETURN:
                return client_error(candidate, result, tally.attempts, exchange)
            if policy.next is Next.LIMIT:
                expiry = self._record_limit(rule.rate_limits, candidate, result, tally.trace)
                if expiry is not None:
                    tally.limited_until.append(expiry)
                else:
                    tally.told_to_retry_now = True
            else:
                tally.failures.append((candidate, result.outcome))
                if policy.next is Next.FALLBACKS_ONLY:
                    tally.fallbacks_only = True  # a larger model may fit; the same model never will
                    tally.overflow = tally.overflow or (candidate, result, exchange)
            tally.previous = (candidate, result.outcome)
        return None

    def _candidates(self, rule: Rule, model: str, table: RouteTable) -> list[Candidate]:
        if isinstance(rule.strategy, RoundRobinStrategy | WeightedRoundRobinStrategy):
            return plan(rule, model, table.providers, self._rotations)  # rotates: new order each time
        if table is not self._table:
            return plan(rule, model, table.providers, self._rotations)
        key = (rule.name, model)
        candidates = self._plans.get(key)
        if candidates is None:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            candidates = self._plans[key] = plan(rule, model, table.providers, self._rotations)
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
        body: bytes,
        emitter: Callable[[], Emitter] | None,
        convert_response: Callable[[dict[str, Any]], bytes] | None,
        request: InboundRequest,
        tally: Tally,
    ) -> RoutedResponse | StreamLeg | AttemptFailure:
        """One candidate, with the bounded same-candidate retry its outcomes allow."""
        provider_id, model = candidate.provider_id, candidate.model
        config = client.config
        # A probe (half-open circuit) is one request, no more.
        retries_left = 0 if self.circuits.is_probing(provider_id, model) else config.max_retries
        backoff_s = config.retry_backoff_ms / 1000
        traced = tally.trace
        while True:
            tally.attempts += 1
            trace = traced.start_attempt(client, candidate, request.stream) if traced is not None else None
            try:
                result = await run_attempt(
                    client,
                    candidate,
                    body,
                    request.headers,
                    emitter=emitter,
                    convert_response=convert_response,
                    counters=self.counters,
                    trace=trace,
                    budgets=self._budget_sink,
                )
            except BaseException:
                # Cancelled, or a bug: a half-open circuit must not keep its probe slot forever.
                self.circuits.release_probe(provider_id, model)
                raise
            if not isinstance(result, AttemptFailure):
                self.limits.record_success(provider_id, model)
                self.circuits.record_success(provider_id, model)
                return result
            policy = POLICY[result.outcome]
            if not policy.retry or retries_left == 0:
                break
            retries_left -= 1
            self.counters.retries += 1
            # Full jitter around a doubling base: concurrent retries do not arrive in lockstep.
            await self.clock.sleep(backoff_s * self._rng.uniform(0.5, 1.5))
            backoff_s *= 2
        if result.outcome is Outcome.TIMEOUT:
            self.counters.timeouts += 1
        elif result.outcome is Outcome.MALFORMED_ANSWER:
            self.counters.malformed_answers += 1
        if not policy.circuit:
            self.circuits.release_probe(provider_id, model)
        elif self.circuits.record_failure(provider_id, model, self.clock.monotonic()):
            self.counters.circuit_opens += 1
            log.warning("circuit of %s / %s opened after repeated failures", provider_id, model)
        return result

    def _resume(
        self,
        request: InboundRequest,
        table: RouteTable,
        rule: Rule,
        candidates: list[Candidate],
        tally: Tally,
    ) -> Resume:
        """Continues a stream that broke after content reached the client, with a candidate this
        request has not tried yet (docs/architecture.md §3, `resume_streams`): an ordinary attempt whose
        stream is read by a `Continuing` emitter and pumped by the same relay."""

        async def resume(ledger: SentLedger, broken: Candidate, outcome: Outcome) -> StreamLeg | None:
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
                body, expected = continuation_request(client, exchange.upstream_body, ledger)
                frames = ContinuationFrames(
                    request.dialect,
                    model=candidate.model,
                    block_index=ledger.block_index,
                    created=int(self.clock.wall()),
                )
                continuing = functools.partial(
                    Continuing, client.dialect, request.dialect, expected, frames, ledger
                )
                result = await self._try_candidate(client, candidate, body, continuing, None, request, tally)
                if isinstance(result, StreamLeg):
                    self._listeners.failed_over(broken, candidate, outcome, tally.trace, resumed=True)
                    return result
                if isinstance(result, RoutedResponse):  # a continuation always streams
                    continue
                policy = POLICY[result.outcome]
                if policy.next is Next.RETURN:
                    log.info(
                        "resume refused by %s (%s); the client gets the original error",
                        candidate.provider_id,
                        result.outcome.value,
                    )
                    return None
                if policy.next is Next.LIMIT:
                    self._record_limit(rule.rate_limits, candidate, result, tally.trace)
            return None

        return resume

    def _worth_waiting(self, tally: Tally, max_wait: float) -> float | None:
        if max_wait <= 0 or tally.failures or tally.unavailable_until or not tally.limited_until:
            return None
        wait = min(tally.limited_until) - self.clock.monotonic()
        return max(wait, 0.0) if wait <= max_wait else None

    def _record_limit(
        self,
        settings: RateLimitSettings,
        candidate: Candidate,
        failure: AttemptFailure,
        trace: RequestTrace | None,
    ) -> float | None:
        clock = self.clock
        expiry, event = record_limit(
            self.limits, settings, candidate, failure, now=clock.monotonic(), wall=clock.wall(), rng=self._rng
        )
        self._listeners.rate_limited(event, trace)
        return expiry
