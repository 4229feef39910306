"""`detour serve`: load the config, bind, serve until signalled."""

from __future__ import annotations

import logging
import os
import signal

from sidecar.app import Sidecar, bind_socket, serve
from sidecar.config.loader import load_config_file
from sidecar.errors import ConfigError

log = logging.getLogger("detour")


async def serve_forever(config_path: str, *, host: str | None, port: int | None) -> int:
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
    sidecar = Sidecar(loaded)
    sock = bind_socket(bind_host, bind_port)
    log.info("detour serving on http://%s:%d", bind_host, sock.getsockname()[1])
    try:
        await serve(sidecar, sock)
    finally:
        await sidecar.aclose()
        sock.close()
    return 0
