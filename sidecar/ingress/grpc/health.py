"""The standard `grpc.health.v1.Health` service, answered from the router itself (docs/grpc.md,
"Health"): `""` and `detour.v1.Gateway` are SERVING once a config is in force and NOT_SERVING
before — as /readyz — and `detour.v1.Admin` is SERVING from the start (it answers without a
config). Every service is NOT_SERVING once the server is stopping. Any other name is NOT_FOUND
(`Check`) or SERVICE_UNKNOWN (`Watch`), as the protocol says.

`Check` reads the router's table when asked, so it is never behind a config being applied;
`Watch` wakes when the router applies a config (a `Watcher`) or the server stops.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from sidecar.routing.events import ConfigApplied, LimitCleared
from sidecar.routing.failover import Router

Status = health_pb2.HealthCheckResponse
Context = Any  # grpc.aio.ServicerContext: grpc ships no type information


class Health:
    """The servicer `health_pb2_grpc.add_HealthServicer_to_server` registers (grpc_health's base
    class is untyped, and only the two methods matter)."""

    def __init__(self, router: Router, *, gateway: bool = True, admin: bool = True) -> None:
        self._router = router
        self._follow_config = ("", "detour.v1.Gateway") if gateway else ("",)
        self._always = ("detour.v1.Admin",) if admin else ()
        self._changed = asyncio.Event()  # replaced after each change; watchers wait on the current one
        self._stopping = False

    def status(self, service: str) -> Any:
        """The service's status now (a `ServingStatus`); None for a service this server does not
        have."""
        if service in self._follow_config:
            ready = self._router.table is not None and not self._stopping
            return Status.SERVING if ready else Status.NOT_SERVING
        if service in self._always:
            return Status.NOT_SERVING if self._stopping else Status.SERVING
        return None

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Context) -> Any:
        status = self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return Status(status=status)

    async def List(self, request: Any, context: Context) -> Any:
        """Every service and its status (the protocol's `List`, in grpcio-health-checking ≥ 1.70)."""
        names = (*self._follow_config, *self._always)
        statuses = {name: Status(status=self.status(name)) for name in names}
        return health_pb2.HealthListResponse(statuses=statuses)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        last: Any = None
        while True:
            changed = self._changed  # taken before reading the status: no change slips between
            status = self.status(request.service)
            current = Status.SERVICE_UNKNOWN if status is None else status
            if current != last:
                await context.write(Status(status=current))
                last = current
            if self._stopping:
                return
            await changed.wait()

    def on_config_applied(self, event: ConfigApplied) -> None:
        self._wake()

    def on_limit_cleared(self, event: LimitCleared) -> None:
        pass

    def stop(self) -> None:
        """Everything NOT_SERVING from now on (graceful shutdown); watchers are told and end."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
