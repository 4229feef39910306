"""The shared state's async shell (docs/scale-out.md): one background task per sidecar that keeps a
Redis link, publishes what this sidecar learns and applies what its peers learned.

The local tables stay the source of truth on the request path: a 429 recorded by the router reaches
`on_rate_limited` (a router `Observer`) and a circuit opened by the router reaches `_circuit_opened`
(the circuit table's listener), which both only append to one bounded queue; a budget seen in an
answer reaches `_budget_seen` (the budget table's listener), which only notes it in a bounded
dict. The task drains them. Whatever happens to Redis — down, slow, flapping — requests go on with
the local state: the first failure of an outage is logged (its exception type only: a message
could name the URL), every failure is counted (`describe`, the `detour.shared_state.errors`
metric), and the task reconnects with backoff. On every (re)connect it re-syncs: it writes this
sidecar's live limits, open circuits and budgets (each kept only if it beats what Redis holds),
then reads the live records of the configured providers — which is also how a restarted sidecar
knows the limits and open circuits in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sidecar.config.models import StateBackend, StateConfig
from sidecar.routing.budgets import Budget, BudgetKey
from sidecar.routing.circuits import CircuitKey, CircuitState
from sidecar.routing.events import FailedOver, RateLimited, Served
from sidecar.routing.limits import LimitKey
from sidecar.shared import merge
from sidecar.shared.merge import Expiring, Record, SharedBudget, SharedCircuit

if TYPE_CHECKING:
    from sidecar.routing.failover import Router
    from sidecar.shared.redis_link import RedisLink

log = logging.getLogger("detour.shared")

QUEUE_SIZE = 1000  # limits and circuits waiting to be written; beyond it they are dropped (counted)
BUDGET_COALESCE_S = 0.1  # budgets are written at most this often per candidate: the newest wins
HEARTBEAT_S = 1.0  # a PING this often notices a Redis that went away while nothing was written

LinkFactory = Callable[[StateConfig], "RedisLink"]
PeerLimitHook = Callable[[RateLimited], None]


def redis_link(settings: StateConfig) -> RedisLink:
    from sidecar.shared.redis_link import RedisLink

    assert settings.url is not None  # validated (config/validate.py)
    return RedisLink(settings.url, key_prefix=settings.key_prefix, timeout_s=settings.timeout_ms / 1000)


CLOSE_TIMEOUT_S = 1.0  # closing a link to Redis, on a reconnect or a stop


class SharedState:
    """Joins a `Router` to a Redis while the config says `state: {backend: redis}`; otherwise idle."""

    def __init__(
        self,
        router: Router,
        *,
        on_peer_limit: PeerLimitHook | None = None,
        link_factory: LinkFactory = redis_link,
        rng: random.Random | None = None,
    ) -> None:
        self._router = router
        self._on_peer_limit = on_peer_limit
        self._link_factory = link_factory
        self._rng = rng or random.Random()
        self.instance = uuid.uuid4().hex[:16]  # tells this sidecar's own records from its peers'
        self.settings: StateConfig | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: list[asyncio.Task[None]] = []
        self._unobserve: Callable[[], None] | None = None
        self._providers: frozenset[str] = frozenset()
        self._outgoing: asyncio.Queue[Expiring] | None = None  # limits and circuits to write
        self._budgets: dict[BudgetKey, Budget] = {}
        self._budgets_waiting = asyncio.Event()
        self._resync = asyncio.Event()
        self.connected = False
        self.counters = {
            "published": 0,
            "peer_limits": 0,
            "peer_circuits": 0,
            "peer_budgets": 0,
            "dropped": 0,
            "errors": 0,
        }
        self.outages = 0
        self.last_error: str | None = None

    # --- lifecycle (the composition root) ---------------------------------------------------------

    def configure(self, settings: StateConfig) -> None:
        """A config was applied: start, stop or restart the link as its `state` section says."""
        providers = frozenset(self._router.table.providers) if self._router.table is not None else frozenset()
        wanted = settings if settings.backend is StateBackend.REDIS else None
        if wanted == self.settings and (wanted is None or self._task is not None):
            if providers != self._providers:
                self._providers = providers
                self._resync.set()  # read what Redis holds for providers added by this config
            return
        self._stop()
        self.settings, self._providers = wanted, providers
        if wanted is not None:
            self.start()

    def start(self) -> None:
        """Begin (with a running event loop; `configure` outside one leaves it to `serve`)."""
        if self.settings is None or self._task is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._outgoing = asyncio.Queue(QUEUE_SIZE)
        self._unobserve = self._router.observe(self)
        self._router.budgets.listener = self._budget_seen
        self._router.circuits.listener = self._circuit_opened
        self._router.shared_state = self.describe
        self._task = asyncio.create_task(self._run(self.settings), name="detour-shared-state")

    async def aclose(self) -> None:
        """Stop, and wait until every link this object opened is closed."""
        self._stop()
        stopping, self._stopping = self._stopping, []
        if stopping:  # each closes its link within CLOSE_TIMEOUT_S; never wait forever on Redis
            await asyncio.wait(stopping, timeout=2 * CLOSE_TIMEOUT_S)

    def _stop(self) -> None:
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        self._router.budgets.listener = None
        self._router.circuits.listener = None
        self._router.shared_state = None
        if self._task is not None:
            self._task.cancel()  # its link is closed as it ends; `aclose` waits for that
            self._stopping = [task for task in self._stopping if not task.done()] + [self._task]
            self._task = None
        self.connected = False

    def describe(self) -> dict[str, Any]:
        """/admin/state's `shared_state`: never the URL, which may hold a password."""
        settings = self.settings
        return {
            "backend": StateBackend.REDIS.value,
            "key_prefix": settings.key_prefix if settings is not None else None,
            "connected": self.connected,
            "outages": self.outages,
            "last_error": self.last_error,
            **self.counters,
        }

    # --- the request path: take note, never wait --------------------------------------------------

    def on_rate_limited(self, event: RateLimited) -> None:
        if not self.connected:
            return  # the re-sync on reconnect writes every live limit
        record = merge.limit_from_event(event, self._router.clock.wall(), self.instance)
        if record is not None:
            self._enqueue(record)

    def _circuit_opened(self, key: CircuitKey, reopens_at: float) -> None:
        if not self.connected:
            return  # the re-sync on reconnect writes every circuit still open
        clock = self._router.clock
        self._enqueue(
            merge.circuit_from_open(key, reopens_at, clock.wall(), clock.monotonic(), self.instance)
        )

    def _enqueue(self, record: Expiring) -> None:
        if self._outgoing is None:
            return
        try:
            self._outgoing.put_nowait(record)
        except asyncio.QueueFull:
            self.counters["dropped"] += 1

    def on_failed_over(self, event: FailedOver) -> None:
        pass

    def on_served(self, event: Served) -> None:
        pass

    def _budget_seen(self, key: BudgetKey, budget: Budget) -> None:
        if self.connected and (key in self._budgets or len(self._budgets) < QUEUE_SIZE):
            self._budgets[key] = budget
            self._budgets_waiting.set()

    # --- the background task ----------------------------------------------------------------------

    async def _run(self, settings: StateConfig) -> None:
        failures = 0
        while True:
            link: RedisLink | None = None
            try:
                link = self._link_factory(settings)
                await link.subscribe()
                await self._sync(link)
                self._up(failures)
                failures = 0
                await self._session(link)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._down(exc, failures)
            finally:
                self.connected = False
                if link is not None:
                    # Bounded: a Redis that stopped answering must not hold up a reconnect or a stop.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(CLOSE_TIMEOUT_S):
                            await link.close()
            await asyncio.sleep(merge.reconnect_delay(failures, self._rng))

    async def _session(self, link: RedisLink) -> None:
        """Until something fails: apply what peers publish, write what this sidecar learns."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(link))
            group.create_task(self._write_expiring(link))
            group.create_task(self._write_budgets(link))
            group.create_task(self._heartbeat(link))

    async def _listen(self, link: RedisLink) -> None:
        async for data in link.published():
            record = merge.decode(data)
            if record is not None and record.origin != self.instance:
                self._apply(record)

    async def _write_expiring(self, link: RedisLink) -> None:
        """Limits and circuits, in the order they were recorded; one already over is not written."""
        assert self._outgoing is not None
        while True:
            record = await self._outgoing.get()
            if record.until > self._router.clock.wall():
                await link.write(record)
                self.counters["published"] += 1

    async def _write_budgets(self, link: RedisLink) -> None:
        while True:
            await self._budgets_waiting.wait()
            self._budgets_waiting.clear()
            pending, self._budgets = self._budgets, {}
            clock = self._router.clock
            for key, budget in pending.items():
                record = merge.budget_to_shared(key, budget, clock.wall(), clock.monotonic(), self.instance)
                await link.write(record)
                self.counters["published"] += 1
            await asyncio.sleep(BUDGET_COALESCE_S)

    async def _heartbeat(self, link: RedisLink) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if self._resync.is_set():
                await self._sync(link)
            await link.ping()

    async def _sync(self, link: RedisLink) -> None:
        """Write this sidecar's live records, then read everyone's (docs/scale-out.md, "Re-sync")."""
        self._resync.clear()
        router, clock = self._router, self._router.clock
        wall, now = clock.wall(), clock.monotonic()
        for key, entry in list(router.limits.active(now)):
            if not entry.peer:
                await link.write(merge.limit_from_entry(key, entry, wall, now, self.instance))
        for circuit in self._own_open_circuits(wall, now):
            await link.write(circuit)
        for budget_key, budget in router.budgets.items():
            if not budget.peer and budget.expires_at() > now:
                await link.write(merge.budget_to_shared(budget_key, budget, wall, now, self.instance))
        bound = router.limits.capacity + router.circuits.capacity  # both tables are bounded anyway
        records = await link.live(sorted(self._providers), at_most=bound)
        for record in records:
            self._apply(record)

    def _own_open_circuits(self, wall: float, now: float) -> list[SharedCircuit]:
        """The circuits this sidecar opened itself that are still open (read at once: the table
        may change while the writes wait on Redis)."""
        circuits = self._router.circuits
        found: list[SharedCircuit] = []
        for (provider_id, model), circuit in circuits.items():
            if circuit.state is CircuitState.CLOSED:
                break  # open and half-open ones come first
            reopens = circuits.reopens_at(provider_id, model)
            if not circuit.peer and reopens is not None and reopens > now:
                found.append(merge.circuit_from_open((provider_id, model), reopens, wall, now, self.instance))
        return found

    def _apply(self, record: Record) -> None:
        """A peer's record into the local tables (the merge rules of docs/scale-out.md)."""
        router = self._router
        if record.provider_id not in self._providers:
            return
        clock = router.clock
        wall, now = clock.wall(), clock.monotonic()
        if isinstance(record, SharedBudget):
            if router.budgets.record(
                (record.provider_id, record.model), merge.budget_from_shared(record, wall, now), now
            ):
                self.counters["peer_budgets"] += 1
            return
        if isinstance(record, SharedCircuit):
            self._adopt_circuit(record, wall, now)
            return
        until = merge.adoptable_until(record, wall)
        if until is None:
            return
        key = LimitKey(record.provider_id, None if record.whole_provider else record.model)
        expires_at = merge.to_local(until, wall, now)
        if not router.limits.adopt(key, expires_at, record.wait_s, record.source, record.reason, now):
            return
        self.counters["peer_limits"] += 1
        log.info(
            "provider %s model %s rate-limited (%s) by a peer: skipped for %.3f s",
            record.provider_id,
            record.model,
            record.reason.value,
            until - wall,
        )
        if self._on_peer_limit is not None:
            event = RateLimited(record.provider_id, record.model, until - wall, record.source, record.reason)
            self._on_peer_limit(event)

    def _adopt_circuit(self, record: SharedCircuit, wall: float, now: float) -> None:
        until = merge.adoptable_until(record, wall)
        circuits = self._router.circuits
        if until is None or not circuits.adopt(
            record.provider_id, record.model, merge.to_local(until, wall, now), now
        ):
            return
        self.counters["peer_circuits"] += 1
        reopens = circuits.reopens_at(record.provider_id, record.model)
        # Info, not the router's warning: the sidecar that met the failures warns, once for all pods.
        log.info(
            "circuit of %s / %s opened by a peer: skipped for %.3f s",
            record.provider_id,
            record.model,
            (reopens if reopens is not None else now) - now,
        )

    def _up(self, failures: int) -> None:
        self.connected = True
        if failures:
            log.warning("shared state: Redis reachable again after %d failed attempt(s); re-synced", failures)
        else:
            log.info(
                "shared state: connected to Redis (key prefix %s)", self.settings and self.settings.key_prefix
            )

    def _down(self, exc: BaseException, failures: int) -> None:
        while isinstance(exc, BaseExceptionGroup):  # a session's task failed: name that failure
            exc = exc.exceptions[0]
        self.counters["errors"] += 1
        self.last_error = type(exc).__name__
        if failures == 1:
            # Once per outage, by type only: redis-py's messages may name the host and port.
            self.outages += 1
            log.warning(
                "shared state: Redis unavailable (%s); serving on this sidecar's own state, reconnecting",
                type(exc).__name__,
            )
