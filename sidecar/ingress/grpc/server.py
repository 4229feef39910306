"""The gRPC server: `detour.v1.Gateway`, `detour.v1.Admin`, `grpc.health.v1.Health` and server
reflection on one `grpc.aio` server, on the event loop the HTTP server runs on (uvloop or not),
sharing the sidecar's router — its config snapshot, limits, circuits and telemetry (docs/grpc.md).

    grpc_server = build_grpc_server(sidecar, "127.0.0.1", 8082)   # binds; in the running loop
    await grpc_server.start()
    ...                                                           # serve HTTP next to it
    await grpc_server.stop(grace_s=5)                             # on shutdown

or `await grpc_server.serve()` as a task: starts, serves until cancelled, then stops gracefully.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecar.ingress.asgi import DEFAULT_MAX_BODY_BYTES
from sidecar.ingress.grpc._generated import admin_pb2, admin_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from sidecar.ingress.grpc.admin import Admin
from sidecar.ingress.grpc.gateway import Gateway
from sidecar.ingress.grpc.health import Health
from sidecar.ingress.grpc.runtime import Runtime
from sidecar.ingress.http_protocol import DEFAULT_LIMITS, ConnectionLimits

log = logging.getLogger("detour.grpc")

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Room for a message's own fields and framing next to the largest body it may carry.
FRAMING_BYTES = 64 * 1024
DEFAULT_GRACE_S = 5.0


class GrpcServer:
    """A bound (not yet started) gRPC server and its services."""

    def __init__(
        self,
        runtime: Runtime,
        host: str,
        port: int,
        *,
        gateway: bool = True,
        admin: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.server = grpc.aio.server(
            options=[
                # grpc enables SO_REUSEPORT by default: a second sidecar could then bind the same
                # port silently and take half the calls. Refuse, as the HTTP socket does.
                ("grpc.so_reuseport", 0),
                # A request may carry a body as large as an HTTP request's (docs/architecture.md
                # §8); grpc itself refuses a larger message with RESOURCE_EXHAUSTED.
                ("grpc.max_receive_message_length", max_body_bytes + FRAMING_BYTES),
                ("grpc.max_send_message_length", -1),
                # The per-port connection cap (docs/operations.md): grpc closes a connection beyond
                # it before its handshake and the call on it fails UNAVAILABLE (the client's channel
                # reconnects with backoff); the connections already open are not affected.
                ("grpc.max_allowed_incoming_connections", limits.max_connections),
                # A connection that does not complete its HTTP/2 handshake within the header
                # timeout is closed, so silent connections cannot hold the slots for grpc's own
                # default of two minutes. An established connection is a client's channel, kept
                # while it lives, as gRPC clients expect (the HTTP keep-alive timeout is not applied).
                ("grpc.server_handshake_timeout_ms", round(limits.header_timeout_secs * 1000)),
            ]
        )
        services = []
        if gateway:
            gateway_pb2_grpc.add_GatewayServicer_to_server(
                Gateway(runtime, max_body_bytes=max_body_bytes), self.server
            )
            services.append(GATEWAY)
        self.admin = Admin(runtime)
        if admin:
            admin_pb2_grpc.add_AdminServicer_to_server(self.admin, self.server)
            services.append(ADMIN)
        self.health = Health(runtime.router, gateway=gateway, admin=admin)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.services = (*services, HEALTH, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(self.services, self.server)
        self.host = host
        self.port = _bind(self.server, host, port)
        self._unwatch: Callable[[], None] | None = runtime.router.watch(self.health)
        self._stopped = False
        self._stopping = asyncio.Event()

    @property
    def address(self) -> str:
        return f"{_host_part(self.host)}:{self.port}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace_s: float | None = DEFAULT_GRACE_S) -> None:
        """Health turns NOT_SERVING and watches end at once; calls in flight get `grace_s` to
        finish (None: until they do), then are cancelled. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.health.stop()
        self.admin.close()
        await self.server.stop(grace_s)

    async def serve(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        """Start, serve until cancelled (or `stop`ped), then stop gracefully."""
        await self.start()
        try:
            # Not grpc's `wait_for_termination()`: cancelling it cancels the future the server's
            # own shutdown waits on, and `stop` then raises CancelledError (grpcio 1.85).
            await self._stopping.wait()
        finally:
            # Shielded: the graceful stop runs to its end even if this task is cancelled again.
            await asyncio.shield(self.stop(grace_s))


def build_grpc_server(
    runtime: Runtime,
    host: str,
    port: int,
    *,
    gateway: bool = True,
    admin: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    limits: ConnectionLimits = DEFAULT_LIMITS,
) -> GrpcServer:
    """The gRPC API of `runtime` (a `Sidecar`), bound to `host`:`port` (0: a free port, see
    `.port`). Call it on the running event loop the HTTP server uses. `gateway` / `admin`: which of
    Detour's services it serves (health and reflection always; e.g. `admin=False` when the admin
    API has a port of its own). `limits`: the HTTP ports' connection limits, of which gRPC applies the
    connection cap and the header timeout (to its handshake). Raises OSError when the address
    cannot be bound."""
    return GrpcServer(
        runtime,
        host,
        port,
        gateway=gateway,
        admin=admin,
        max_body_bytes=max_body_bytes,
        limits=limits,
    )


def _bind(server: grpc.aio.Server, host: str, port: int) -> int:
    address = f"{_host_part(host)}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
        raise OSError(f"gRPC could not listen on {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"gRPC could not listen on {address}")
    return int(bound)


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
