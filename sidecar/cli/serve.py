"""`detour serve`: load the config, start telemetry if the environment asks for it, bind, serve
until signalled, then flush telemetry."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from sidecar.app import Sidecar, bind_socket, serve
from sidecar.config.loader import load_config_file
from sidecar.errors import ConfigError
from sidecar.telemetry import TelemetrySettings
from sidecar.telemetry.runtime import start_telemetry

log = logging.getLogger("detour")


async def serve_forever(
    config_path: str,
    *,
    host: str | None,
    port: int | None,
    telemetry_settings: TelemetrySettings | None = None,
) -> int:
    try:
        loaded = load_config_file(config_path, env=os.environ)
    except ConfigError as exc:
        log.error("config %s is invalid:\n%s", config_path, exc)
        return 1
    for warning in loaded.warnings:
        log.warning("%s", warning)
    server_config = loaded.config.server
    bind_host = host or server_config.host
    bind_port = server_config.port if port is None else port
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found; a no-op handler
    # makes that a clean exit 0 instead of death by signal after a graceful shutdown.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        telemetry = start_telemetry(telemetry_settings) if telemetry_settings is not None else None
    except OSError as exc:  # e.g. the --metrics-port is taken
        log.error("telemetry could not start: %s", exc)
        return 1
    sidecar = Sidecar(loaded, telemetry=telemetry)
    sock = bind_socket(bind_host, bind_port)
    log.info("detour serving on http://%s:%d", bind_host, sock.getsockname()[1])
    try:
        await serve(sidecar, sock)
    finally:
        await sidecar.aclose()
        sock.close()
        if telemetry is not None:
            await asyncio.to_thread(telemetry.shutdown)  # exports what is still buffered
    return 0
