"""`detour.v1.Admin`: the state /admin/state shows, the routing events as they happen, and lifting
a limit by hand (docs/grpc.md, "Admin").

`WatchEvents` gives each watcher an `EventFeed`: the router (and the config source) hand it events
synchronously, inside the request or reload that caused them, and it only appends them to a
bounded queue; the watcher's own call drains the queue at the pace its client reads. A watcher too
slow to keep up loses the newest events, counted (`Event.dropped` on the next one it gets, and
`Admin.dropped` in total): a slow watcher never slows a request (docs/architecture.md §8).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

import grpc

from sidecar.ingress.grpc._generated import admin_pb2 as pb
from sidecar.ingress.grpc._generated import admin_pb2_grpc
from sidecar.ingress.grpc.messages import AdminEvent, event_message, state_message
from sidecar.ingress.grpc.runtime import Runtime
from sidecar.routing.events import (
    ConfigApplied,
    ConfigRejected,
    FailedOver,
    LimitCleared,
    RateLimited,
    Served,
)

log = logging.getLogger("detour.grpc")

FEED_CAPACITY = 1024  # events one watcher may be behind before newer ones are dropped
Context = Any  # grpc.aio.ServicerContext: grpc ships no type information


class EventFeed:
    """One watcher's queue: a `Watcher` for the router and a listener for the config source."""

    __slots__ = ("_dropped", "_items", "_ready", "_wall", "capacity", "closed", "dropped_total")

    def __init__(self, wall: Callable[[], float], capacity: int = FEED_CAPACITY) -> None:
        self._wall = wall
        self.capacity = capacity
        self._items: collections.deque[tuple[float, AdminEvent, int]] = collections.deque()
        self._ready = asyncio.Event()
        self._dropped = 0  # dropped since the last event queued
        self.dropped_total = 0
        self.closed = False

    def on_rate_limited(self, event: RateLimited) -> None:
        self._offer(event)

    def on_failed_over(self, event: FailedOver) -> None:
        self._offer(event)

    def on_served(self, event: Served) -> None:
        pass  # one per request: not an admin event

    def on_config_applied(self, event: ConfigApplied) -> None:
        self._offer(event)

    def on_config_rejected(self, event: ConfigRejected) -> None:
        self._offer(event)

    def on_limit_cleared(self, event: LimitCleared) -> None:
        self._offer(event)

    def _offer(self, event: AdminEvent) -> None:
        if self.closed:
            return
        if len(self._items) >= self.capacity:
            self._dropped += 1
            self.dropped_total += 1
            return
        self._items.append((self._wall(), event, self._dropped))
        self._dropped = 0
        self._ready.set()

    def close(self) -> None:
        """The server is stopping: the watcher's call ends once it has what was queued."""
        self.closed = True
        self._ready.set()

    async def next(self) -> tuple[float, AdminEvent, int] | None:
        """The oldest queued (time, event, dropped before it); None once closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class Admin(admin_pb2_grpc.AdminServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._feeds: set[EventFeed] = set()
        self.feed_capacity = FEED_CAPACITY
        self.dropped = 0  # events dropped for watchers that have gone since

    async def GetState(self, request: pb.GetStateRequest, context: Context) -> pb.State:
        state = self._runtime.router.describe_state()
        state["reload"] = self._runtime.describe_config_source()
        return state_message(state)

    async def ClearLimit(self, request: pb.ClearLimitRequest, context: Context) -> pb.ClearLimitResponse:
        router = self._runtime.router
        table = router.table
        if table is None or request.provider not in table.providers:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no provider {request.provider!r} in the config")
        cleared = router.clear_limit(request.provider, request.model or None)
        log.info(
            "limit of %s%s cleared by Admin.ClearLimit (%d entries)",
            request.provider,
            f" / {request.model}" if request.model else " (every model)",
            cleared,
        )
        return pb.ClearLimitResponse(cleared=cleared)

    async def WatchEvents(self, request: pb.WatchEventsRequest, context: Context) -> None:
        router = self._runtime.router
        feed = EventFeed(router.clock.wall, self.feed_capacity)
        self._feeds.add(feed)
        unobserve = router.observe(feed)
        unwatch = router.watch(feed)
        source = self._runtime.config_source
        unsubscribe = source.subscribe(feed.on_config_rejected) if source is not None else None
        try:
            # Initial metadata tells the client that the watch is in place: every event from now
            # on reaches it (tests and tools wait for it instead of sleeping).
            await context.send_initial_metadata((("detour-watching", "1"),))
            while (item := await feed.next()) is not None:
                await context.write(event_message(*item))
        finally:
            unobserve()
            unwatch()
            if unsubscribe is not None:
                unsubscribe()
            self._feeds.discard(feed)
            self.dropped += feed.dropped_total

    def close(self) -> None:
        """End every watch (the server is stopping)."""
        for feed in self._feeds:
            feed.close()
