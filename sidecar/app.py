"""The composition root: one running sidecar — config snapshot, provider clients, router, ASGI app.

The CLI, the demo and the tests all build a `Sidecar` and serve it with `serve`, so every one of
them runs the same wiring over real sockets. Telemetry, when on, is built by the caller
(`sidecar.telemetry.runtime.start_telemetry`) and handed in; the sidecar wires its hooks into the
router and feeds the active-limits gauge, but the caller owns its flush and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from sidecar.config.loader import LoadedConfig
from sidecar.config.models import ProviderConfig
from sidecar.ingress.asgi import DetourASGI
from sidecar.ingress.http_protocol import DEFAULT_MAX_HEADER_BYTES, header_capped_protocol
from sidecar.kube.reload import ReloadStatus
from sidecar.providers.client import ProviderClient
from sidecar.providers.http import HttpxTransport, Transport
from sidecar.routing.events import Observer
from sidecar.routing.failover import Router
from sidecar.routing.table import Clock, RouteTable
from sidecar.telemetry.runtime import Telemetry

log = logging.getLogger("detour")


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
        if telemetry is not None:
            telemetry.watch_limits(self.router.active_limits)
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
        log.info("config %s applied from %s", loaded.version, loaded.source)
        return table

    async def aclose(self) -> None:
        clients = [client for _, client in self._clients.values()] + self._retired
        self._clients, self._retired = {}, []
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def make_server(
    app: Any, *, log_level: str = "warning", max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        loop="none",
        http=header_capped_protocol(max_header_bytes),  # httptools, with a cap on the request head
        lifespan="off",
        access_log=False,
        # Pod-local: there is no proxy in front whose X-Forwarded-* headers to trust, and no reason
        # to spend per-response work on Server/Date headers nobody reads.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


async def serve(
    sidecar: Sidecar,
    sock: socket.socket,
    *,
    probe_sock: socket.socket | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> None:
    """Serve on a socket from `bind_socket` until cancelled or signalled, then drain gracefully.

    With `probe_sock`, `/healthz` and `/readyz` are also served there (and nothing else), so the
    kubelet can probe the pod IP while the API stays on loopback. `max_header_bytes` caps each
    request's line and headers on both (431 beyond)."""
    listeners = [(make_server(sidecar.asgi, max_header_bytes=max_header_bytes), sock)]
    if probe_sock is not None:
        probes = DetourASGI(sidecar, probes_only=True)
        listeners.append((make_server(probes, max_header_bytes=max_header_bytes), probe_sock))
    servers = [server for server, _ in listeners]
    serving = [asyncio.ensure_future(server.serve(sockets=[s])) for server, s in listeners]
    try:
        # Either server stopping (a signal reaches both) ends the sidecar.
        await asyncio.shield(asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED))
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.wait(serving, timeout=6)
