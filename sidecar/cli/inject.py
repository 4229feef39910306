"""`detour inject`: the mutating admission webhook that adds the sidecar to labelled pods.

Start-up checks everything it can before serving (the settings file, the certificate pair, the
listen address), so a bad chart value fails the injector's rollout instead of silently producing
pods without a sidecar; after that, nothing the API server sends can stop it (see
`sidecar.inject.review`).
"""

from __future__ import annotations

import logging
import signal
import ssl

from sidecar import __version__
from sidecar.errors import ConfigError
from sidecar.inject.settings import load_injector_settings
from sidecar.inject.webhook import InjectorASGI, TlsFiles, serve_injector
from sidecar.sockets import bind_socket

log = logging.getLogger("detour.inject")


async def run_injector(
    *,
    listen: tuple[str, int],
    cert_file: str,
    key_file: str,
    image: str,
    config_path: str | None,
    reload_s: float,
) -> int:
    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn drains, then re-raises: exit 0, not death
    try:
        host, port = listen
        settings = load_injector_settings(config_path)
        tls = TlsFiles(cert_file, key_file, interval_s=reload_s)
        sock = bind_socket(host, port)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s: %s", config_path, problem)
        return 1
    except (OSError, ssl.SSLError, ValueError) as exc:
        log.error("detour inject cannot start: %s", exc)
        return 1
    app = InjectorASGI(settings, image=image, version=__version__)
    log.info("detour inject %s serving https://%s:%d/mutate (sidecar image %s)", __version__, host,
             sock.getsockname()[1], image)  # fmt: skip
    try:
        await serve_injector(app, tls, sock)
    finally:
        sock.close()
    return 0
