"""`detour serve`: pick the config source, start telemetry if the environment asks for it, bind,
serve until signalled, then flush telemetry.

Two sources (docs/configuration.md): `--config FILE`, reloaded when the file (or a mounted
ConfigMap's `..data` symlink) changes, where an invalid file at start-up is fatal; or
`--configmap NAMESPACE/NAME`, watched through the API server, where the process serves at once and
turns ready with the first valid config. Either way every change goes through `ConfigReloader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.app import DEFAULT_SHUTDOWN_GRACE_SECS, Sidecar, serve
from sidecar.ingress.asgi import DEFAULT_MAX_BODY_BYTES
from sidecar.ingress.http_protocol import DEFAULT_LIMITS, ConnectionLimits
from sidecar.kube.configmap import ConfigMapRef
from sidecar.kube.files import read_text
from sidecar.kube.reload import ConfigReloader
from sidecar.sockets import bind_socket
from sidecar.telemetry import TelemetrySettings
from sidecar.telemetry.runtime import start_telemetry

if TYPE_CHECKING:
    from sidecar.ingress.grpc.server import GrpcServer

log = logging.getLogger("detour")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8081
PROBE_HOST = "0.0.0.0"  # the kubelet probes the pod IP; only /healthz and /readyz are served there


@dataclass(frozen=True)
class ServeSettings:
    config_path: str | None = None
    configmap: ConfigMapRef | None = None
    host: str | None = None
    port: int | None = None
    reload_interval_s: float = 0.5
    kubeconfig: str | None = None
    health_port: int | None = None  # /healthz and /readyz only, on every interface, for the kubelet
    telemetry: TelemetrySettings | None = None
    admin_port: int | None = None  # /admin/* there only, on `host`; None: on the API port
    grpc_port: int | None = None  # gRPC API on `host` (docs/grpc.md); None: off (the CLI says 8082)
    # The limits that protect the process (docs/operations.md), the flags of the same names: each
    # connection's on every HTTP port (gRPC takes the cap and the header timeout), then the
    # drain's and the request body's.
    limits: ConnectionLimits = DEFAULT_LIMITS
    shutdown_grace_secs: float = DEFAULT_SHUTDOWN_GRACE_SECS  # SIGTERM → in-flight work is cut
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # 413 beyond
    gc_freeze: bool = False  # `detour serve` turns it on (--gc-freeze): not for in-process tests
    switch_interval_s: float | None = None  # the interpreter's thread switch interval; None: Python's
    gc_threshold: int | None = None  # the cyclic GC's youngest-generation threshold; None: Python's


async def serve_forever(settings: ServeSettings) -> int:
    sigterm = _SigtermBeforeServing()
    signal.signal(signal.SIGTERM, sigterm)
    try:
        telemetry = start_telemetry(settings.telemetry) if settings.telemetry is not None else None
    except OSError as exc:  # e.g. the --metrics-port is taken
        log.error("telemetry could not start: %s", exc)
        return 1
    sidecar = Sidecar(telemetry=telemetry)
    try:
        follow = await _config_source(settings, sidecar)
        if follow is None:
            return 1
        host, port = _address(settings, sidecar)
        sockets: list[socket.socket] = []
        try:
            sock = bind_socket(host, port)
            sockets.append(sock)
            probe_sock = _bound(sockets, PROBE_HOST, settings.health_port)
            # The admin port shares the API's host: loopback unless the API itself is exposed.
            admin_sock = _bound(sockets, host, settings.admin_port)
        except OSError as exc:  # e.g. a port already taken
            log.error("could not listen: %s", exc)
            follow.close()
            for bound in sockets:
                bound.close()
            return 1
        try:
            grpc_server = await _start_grpc(settings, sidecar, host, admin=admin_sock is None)
        except OSError as exc:
            log.error("could not listen for gRPC on %s:%s: %s", host, settings.grpc_port, exc)
            follow.close()
            for bound in sockets:
                bound.close()
            return 1
        log.info("detour serving on http://%s:%d", host, sock.getsockname()[1])
        if probe_sock is not None:
            log.info("health probes on http://%s:%d", PROBE_HOST, probe_sock.getsockname()[1])
        if admin_sock is not None:
            log.info("admin endpoints on http://%s:%d", host, admin_sock.getsockname()[1])
        following = asyncio.ensure_future(follow)
        sigterm.stop = asyncio.Event()
        if settings.gc_freeze:
            freeze_startup_objects()
        if settings.gc_threshold is not None:
            collect_young_objects_after(settings.gc_threshold)
        if settings.switch_interval_s is not None:
            # The exporter's thread encodes batches while the event loop waits for the interpreter;
            # Python lets it hold on for 5 ms, which lands on a request's tail latency as it is.
            sys.setswitchinterval(settings.switch_interval_s)
        try:
            await serve(
                sidecar,
                sock,
                probe_sock=probe_sock,
                admin_sock=admin_sock,
                limits=settings.limits,
                shutdown_grace_secs=settings.shutdown_grace_secs,
                max_body_bytes=settings.max_body_bytes,
                grpc=grpc_server,
                stop=sigterm.stop,
            )
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            for bound in sockets:
                bound.close()
    finally:
        await sidecar.aclose()
        if telemetry is not None:
            await asyncio.to_thread(telemetry.shutdown)  # exports what is still buffered
    return 0


def freeze_startup_objects() -> None:
    """Start-up leaves ~70,000 objects that live as long as the process (modules, the config, the
    SDK's providers). A full collection of the cyclic GC walks all of them — several milliseconds
    during which no request moves — and a sidecar with telemetry on triggers one about every
    second, because spans waiting in the export queue live long enough to reach the oldest
    generation. Frozen, they are never scanned again (docs/benchmarks.md, "Telemetry on")."""
    gc.collect()
    gc.freeze()


def collect_young_objects_after(allocations: int) -> None:
    """Python collects its youngest generation after 700 net allocations of container objects.
    With 16 requests in flight, the objects those requests hold come and go around that number, so
    the collector ran every 10 to 20 requests, each time walking what was in flight: about 9 µs of
    CPU per request with telemetry off and 25 to 35 µs with it on (mostly cache misses, which an
    instruction count hardly sees). At 3,000 it hardly runs with telemetry off and a tenth as often
    with it on; its longest pauses stay where the older generations' were (about 3 ms), and the
    older generations' thresholds stay Python's (docs/benchmarks.md, "Telemetry on")."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(allocations, older, oldest)


class _SigtermBeforeServing:
    """The SIGTERM handler `detour serve` installs first.

    Before serving (loading the config, binding) there is nothing to drain: SIGTERM exits at once,
    with 0. Once serving, uvicorn's own handler takes over within a loop turn and drains; a SIGTERM
    in that turn sets `stop`, which `serve` drains on just the same. uvicorn re-raises the signal
    to this handler after its drain: setting `stop` again is harmless, and the exit is a clean 0,
    not death by signal."""

    def __init__(self) -> None:
        self.stop: asyncio.Event | None = None  # set when serving begins

    def __call__(self, signum: int, frame: object) -> None:
        if self.stop is None:
            raise SystemExit(0)
        asyncio.get_running_loop().call_soon_threadsafe(self.stop.set)


async def _config_source(settings: ServeSettings, sidecar: Sidecar) -> Coroutine[Any, Any, None] | None:
    """Load the first config (file mode) and return the coroutine that follows later changes."""
    if settings.configmap is not None:
        from sidecar.kube.client import core_v1_api
        from sidecar.kube.follow import configmap_reporter, follow_configmap

        ref = settings.configmap
        core_api = await asyncio.to_thread(core_v1_api, settings.kubeconfig)
        reloader = ConfigReloader(
            sidecar.apply, source=f"configmap:{ref}", env=os.environ, report=configmap_reporter(ref, core_api)
        )
        sidecar.config_source = reloader.status
        log.info("following configmap %s (key %s)", ref, ref.key)
        return follow_configmap(ref, reloader, core_api)

    from sidecar.kube.follow import follow_file

    path = settings.config_path
    assert path is not None  # the CLI requires one source
    try:
        text = await asyncio.to_thread(read_text, path)
    except (OSError, UnicodeDecodeError) as exc:
        log.error("config %s could not be read: %s", path, exc)
        return None
    reloader = ConfigReloader(sidecar.apply, source=f"file:{path}", env=os.environ)
    sidecar.config_source = reloader.status
    if not await reloader.offer_text(text, origin=f"file:{path}"):
        return None  # an invalid file at start-up is fatal; the problems were logged
    return follow_file(path, reloader, initial_text=text, interval_s=settings.reload_interval_s)


async def _start_grpc(
    settings: ServeSettings, sidecar: Sidecar, host: str, *, admin: bool
) -> GrpcServer | None:
    """The started gRPC server, or None when it is off; OSError when it cannot listen.

    Imported here, not at the top: grpc is loaded only by a sidecar that serves it."""
    if settings.grpc_port is None:
        return None
    from sidecar.ingress.grpc.server import build_grpc_server

    server = build_grpc_server(
        sidecar,
        host,
        settings.grpc_port,
        admin=admin,
        max_body_bytes=settings.max_body_bytes,
        limits=settings.limits,
    )
    await server.start()
    log.info("gRPC API on %s", server.address)
    return server


def _bound(sockets: list[socket.socket], host: str, port: int | None) -> socket.socket | None:
    """A listening socket on `host:port` (kept in `sockets` for closing), or None without a port."""
    if port is None:
        return None
    sock = bind_socket(host, port)
    sockets.append(sock)
    return sock


def _address(settings: ServeSettings, sidecar: Sidecar) -> tuple[str, int]:
    """Command-line flags win over the config's `server` section, which wins over the defaults."""
    table = sidecar.current_table()
    server = table.loaded.config.server if table is not None else None
    host = settings.host or (server.host if server else DEFAULT_HOST)
    port = settings.port if settings.port is not None else (server.port if server else DEFAULT_PORT)
    return host, port
