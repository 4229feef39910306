"""The composition root: one running sidecar — config snapshot, provider clients, router, ASGI app.

The CLI, the demo and the tests all build a `Sidecar` and serve it with `serve`, so every one of
them runs the same wiring over real sockets. Telemetry, when on, is built by the caller
(`sidecar.telemetry.runtime.start_telemetry`) and handed in; the sidecar wires its hooks into the
router and feeds the active-limits gauge, but the caller owns its flush and shutdown.

The shared state (docs/scale-out.md) follows the config: each applied config's `state` section
starts, keeps or stops the Redis link; with the default `memory` backend nothing of it runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol

import uvicorn

from sidecar.config.loader import LoadedConfig
from sidecar.config.models import ProviderConfig
from sidecar.ingress.asgi import DEFAULT_MAX_BODY_BYTES, DetourASGI
from sidecar.ingress.http_protocol import DEFAULT_LIMITS, ConnectionLimits, guarded_protocol
from sidecar.kube.reload import ReloadStatus
from sidecar.providers.client import ProviderClient
from sidecar.providers.http import HttpxTransport, Transport
from sidecar.routing.events import Observer
from sidecar.routing.failover import Router
from sidecar.routing.table import Clock, RouteTable
from sidecar.shared.state import LinkFactory, SharedState, redis_link
from sidecar.telemetry.runtime import Telemetry

log = logging.getLogger("detour")


class Drainable(Protocol):
    """A server `serve` stops with its own (the gRPC server, docs/grpc.md)."""

    async def stop(self, grace_s: float | None) -> None: ...


class Sidecar:
    def __init__(
        self,
        loaded: LoadedConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observers: Sequence[Observer] = (),
        transport_factory: Callable[[], Transport] = HttpxTransport,
        telemetry: Telemetry | None = None,
        shared_link: LinkFactory = redis_link,
    ) -> None:
        self._clients: dict[str, tuple[ProviderConfig, ProviderClient]] = {}
        self._retired: list[ProviderClient] = []
        self._transport_factory = transport_factory
        self.config_source: ReloadStatus | None = None  # set by whoever feeds reloads (the CLI)
        self.router = Router(
            clock=clock,
            rng=rng,
            observers=observers,
            tracing=telemetry.tracing if telemetry is not None else None,
        )
        instruments = telemetry.tracing.instruments if telemetry is not None else None
        if telemetry is not None:
            telemetry.watch_limits(self.router.active_limits)
        self.shared = SharedState(
            self.router,
            on_peer_limit=functools.partial(instruments.rate_limited, peer=True) if instruments else None,
            link_factory=shared_link,
        )
        if instruments is not None:
            instruments.watch_shared_state(self._shared_totals)
        self.asgi = DetourASGI(self)
        if loaded is not None:
            self.apply(loaded)

    def current_table(self) -> RouteTable | None:
        return self.router.table

    def describe_config_source(self) -> dict[str, Any] | None:
        """The config source and its last reload's result, when a reloader feeds this sidecar."""
        return self.config_source.describe() if self.config_source is not None else None

    def apply(self, loaded: LoadedConfig) -> RouteTable:
        """Swap in a validated config; clients whose settings did not change are reused."""
        clients: dict[str, tuple[ProviderConfig, ProviderClient]] = {}
        for provider_id, config in loaded.config.providers.items():
            existing = self._clients.get(provider_id)
            if existing is not None and existing[0] == config:
                clients[provider_id] = existing
            else:
                clients[provider_id] = (
                    config,
                    ProviderClient(provider_id, config, self._transport_factory()),
                )
        for provider_id, (_, client) in self._clients.items():
            if clients.get(provider_id, (None, None))[1] is not client:
                client.retire()  # closed once its in-flight requests (streams too) have ended
                self._retired.append(client)
        self._retired = [client for client in self._retired if not client.closed]
        self._clients = clients
        table = RouteTable(
            loaded=loaded,
            rules=loaded.config.rules_by_priority(),
            providers=dict(loaded.config.providers),
            clients={provider_id: client for provider_id, (_, client) in clients.items()},
        )
        self.router.apply(table)
        self.shared.configure(loaded.config.state)
        log.info("config %s applied from %s", loaded.version, loaded.source)
        return table

    def _shared_totals(self) -> dict[str, Any] | None:
        """The `detour.shared_state.*` metrics; nothing while no Redis is configured."""
        return self.shared.describe() if self.shared.settings is not None else None

    async def aclose(self) -> None:
        await self.shared.aclose()
        clients = [client for _, client in self._clients.values()] + self._retired
        self._clients, self._retired = {}, []
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


DEFAULT_SHUTDOWN_GRACE_SECS = 20.0  # below Kubernetes' default terminationGracePeriodSeconds (30 s)
SHUTDOWN_MARGIN_S = 2.0  # beyond the grace: cutting what is left and closing the provider clients
_DRAIN_POLL_S = 0.05  # how often a draining server looks at what is still in flight
_CUT_SETTLE_S = 0.1  # after the cut: time for requests to see their client gone, before cancelling


class DrainingServer(uvicorn.Server):
    """uvicorn's server with Detour's shutdown (docs/operations.md, "Shutdown").

    On SIGTERM (or SIGINT) it stops accepting, closes idle connections, lets requests and streams in
    flight finish for up to `grace_secs`, then closes the connections still open — their requests
    see `http.disconnect` and end, closing their upstream streams — and cancels what is still
    running (a request waiting on a provider). uvicorn's own shutdown cancels the tasks instead,
    which logs a traceback per request and leaves slow readers' connections to the caller.

    The sidecar's servers (API, probes, admin) are `peers`: uvicorn chains their signal handlers, so
    only the last one installed sees the signal; it tells the others at once, so every port drains
    within the same grace."""

    def __init__(self, config: uvicorn.Config, *, name: str, grace_secs: float) -> None:
        super().__init__(config)
        self.name = name
        self.grace_secs = grace_secs
        self.peers: Sequence[DrainingServer] = ()
        self.on_exit: Callable[[], None] | None = None  # told of the signal, on the event loop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        for peer in self.peers:
            peer.should_exit = True
        if self.on_exit is not None:  # a signal handler: the event loop runs it, not this frame
            asyncio.get_running_loop().call_soon_threadsafe(self.on_exit)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # idle: closed now; busy: closed once its response is complete
        await asyncio.sleep(0)  # the listeners' close completes before anyone is told it did
        log.info(
            "%s port closed to new connections; %d request(s) in flight get up to %g s",
            self.name,
            len(state.tasks),
            self.grace_secs,
        )
        try:
            async with asyncio.timeout(self.grace_secs):
                # uvicorn signals neither a request's end nor a connection's close: poll, as it does.
                while state.connections or state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(_DRAIN_POLL_S)
        except TimeoutError:
            await self._cut()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _cut(self) -> None:
        state = self.server_state
        log.warning(
            "%s port: shutdown grace of %g s over; closing %d connection(s), %d request(s) in flight",
            self.name,
            self.grace_secs,
            len(state.connections),
            len(state.tasks),
        )
        for connection in list(state.connections):
            connection.transport.abort()  # now: a slow reader's unsent buffer is dropped, not flushed
        if not state.tasks:
            return
        _, running = await asyncio.wait(set(state.tasks), timeout=_CUT_SETTLE_S)
        if not running:
            return
        # Requests still waiting on a provider: cancelled. uvicorn would log a traceback for each;
        # the cut is logged above, once.
        uvicorn_log = logging.getLogger("uvicorn.error")
        quiet = _CancelledRequests()
        uvicorn_log.addFilter(quiet)
        try:
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=_CUT_SETTLE_S)
        finally:
            uvicorn_log.removeFilter(quiet)


class _CancelledRequests(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" traceback of a request cancelled at the cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def make_server(
    app: Any,
    *,
    name: str = "API",
    log_level: str = "warning",
    limits: ConnectionLimits = DEFAULT_LIMITS,
    shutdown_grace_secs: float = DEFAULT_SHUTDOWN_GRACE_SECS,
) -> DrainingServer:
    """One uvicorn server for `app`; `limits` apply to each of its connections (docs/operations.md),
    the keep-alive timeout included (kept by the protocol, not uvicorn's timer)."""
    config = uvicorn.Config(
        app,
        loop="none",
        http=guarded_protocol(limits),  # httptools, with Detour's per-connection limits
        ws="none",  # no WebSocket endpoint: an upgrade must not switch to an unguarded protocol
        lifespan="off",
        access_log=False,
        # Pod-local: there is no proxy in front whose X-Forwarded-* headers to trust, and no reason
        # to spend per-response work on Server/Date headers nobody reads.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level=log_level,
    )
    return DrainingServer(config, name=name, grace_secs=shutdown_grace_secs)


async def serve(
    sidecar: Sidecar,
    sock: socket.socket,
    *,
    probe_sock: socket.socket | None = None,
    admin_sock: socket.socket | None = None,
    limits: ConnectionLimits = DEFAULT_LIMITS,
    shutdown_grace_secs: float = DEFAULT_SHUTDOWN_GRACE_SECS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    grpc: Drainable | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve on a socket from `bind_socket` until cancelled or signalled, then drain gracefully.

    With `grpc` (started by the caller, docs/grpc.md), the gRPC server drains with the HTTP ports:
    from the signal, within the same grace. Setting `stop` drains like a signal does (a SIGTERM
    that came before uvicorn's handlers were installed).

    With `probe_sock`, `/healthz` and `/readyz` are also served there (and nothing else), so the
    kubelet can probe the pod IP while the API stays on loopback. With `admin_sock`, `/admin/*` is
    served there only (404 on the API port). The connection `limits` apply to every port, each port
    counting its own connections; `max_body_bytes` to the API's requests (docs/operations.md)."""
    server_for = functools.partial(make_server, limits=limits, shutdown_grace_secs=shutdown_grace_secs)
    api = DetourASGI(sidecar, admin=admin_sock is None, max_body_bytes=max_body_bytes)
    listeners = [(server_for(api, name="API"), sock)]
    if probe_sock is not None:
        probes = DetourASGI(sidecar, probes_only=True)
        listeners.append((server_for(probes, name="probe"), probe_sock))
    if admin_sock is not None:
        admin = DetourASGI(sidecar, admin_only=True)
        listeners.append((server_for(admin, name="admin"), admin_sock))
    servers = [server for server, _ in listeners]
    draining: list[asyncio.Future[None]] = []

    def drain_grpc() -> None:
        if grpc is not None and not draining:
            draining.append(asyncio.ensure_future(grpc.stop(shutdown_grace_secs)))

    for server in servers:
        server.peers = servers
        server.on_exit = drain_grpc
    sidecar.shared.start()  # a config applied before the event loop ran leaves it to here
    serving = [asyncio.ensure_future(server.serve(sockets=[s])) for server, s in listeners]
    if stop is not None:

        async def stop_when_told() -> None:
            await stop.wait()
            for server in servers:
                server.should_exit = True
            drain_grpc()

        told = asyncio.ensure_future(stop_when_told())
    try:
        # Either server stopping (a signal reaches all of them) ends the sidecar.
        await asyncio.shield(asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED))
    finally:
        for server in servers:
            server.should_exit = True
        drain_grpc()
        await asyncio.wait([*serving, *draining], timeout=shutdown_grace_secs + SHUTDOWN_MARGIN_S)
        if stop is not None:
            told.cancel()
