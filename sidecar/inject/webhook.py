"""`detour inject`'s I/O shell: HTTPS on uvicorn, `POST /mutate` and `GET /healthz`.

The decisions are made by `review` (pure); this module only reads bodies (bounded), writes JSON and
keeps the TLS certificate fresh. cert-manager (or the chart, on upgrade) replaces the Secret, and the
kubelet swaps the mounted files; `TlsFiles` polls them with the same watcher as `--config FILE` and
loads a new pair into the *live* `SSLContext`, so new handshakes use it without a restart. A
half-written pair (a new certificate with the old key) fails to load and is ignored until the other
file changes too; the previous certificate keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

from sidecar.inject.review import review
from sidecar.inject.settings import InjectorSettings
from sidecar.kube.files import FileWatcher, read_text

log = logging.getLogger("detour.inject")

# The API server caps a request at 3 MiB of etcd object; a review carries the object twice at most.
MAX_REVIEW_BYTES = 8 * 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class InjectorASGI:
    def __init__(self, settings: InjectorSettings, *, image: str, version: str) -> None:
        self.settings = settings
        self.image = image
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"])
        if route == ("GET", "/healthz"):
            await _send_json(send, 200, {"status": "ok"})
        elif route == ("POST", "/mutate"):
            body = await _read_body(receive)
            if body is None:
                await _send_json(send, 413, {"error": f"review larger than {MAX_REVIEW_BYTES} bytes"})
                return
            reviewed = review(body, self.settings, image=self.image, version=self.version)
            (log.warning if reviewed.problem else log.info)("%s", reviewed.log_line)
            await _send_json(send, 200, reviewed.body)
        else:
            await _send_json(send, 404, {"error": "not found; the webhook path is POST /mutate"})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REVIEW_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class TlsFiles:
    """A server `SSLContext` loaded from a certificate and key file, reloaded when they change."""

    def __init__(self, cert_file: str, key_file: str, *, interval_s: float = 1.0) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.loads = 1
        # Primed with what is loaded now, so a change made before `follow` runs is not missed.
        self._watchers = [
            FileWatcher(path, self._changed, interval_s=interval_s) for path in (cert_file, key_file)
        ]
        for watcher in self._watchers:
            watcher.prime(read_text(watcher.path))
        self.context = self._load()  # raises at start-up: an injector without a certificate is useless

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    async def reload(self) -> bool:
        """Load the files into the live context if they form a valid pair; keep the old one if not."""
        try:
            await asyncio.to_thread(self._load)  # check the pair first, off the event loop
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS files not reloaded (the previous certificate keeps serving): %s", exc)
            return False
        self.loads += 1
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

    async def _changed(self, _text: str) -> None:
        await self.reload()

    async def follow(self) -> None:
        """Reload whenever either file changes (a Secret volume swaps both at once)."""
        await asyncio.gather(*(watcher.run() for watcher in self._watchers))


async def serve_injector(app: InjectorASGI, tls: TlsFiles, sock: socket.socket) -> None:
    """Serve HTTPS on `sock` until signalled, following certificate changes meanwhile."""
    config = uvicorn.Config(
        app, loop="none", http="httptools", lifespan="off", access_log=False, proxy_headers=False,
        server_header=False, log_level="warning", timeout_graceful_shutdown=5,
        # Longer than the API server keeps an idle connection (90 s), so it never sends a review on a
        # connection this side has just closed (a POST is not retried: the pod would go unpatched).
        timeout_keep_alive=120,
    )  # fmt: skip
    config.load()
    config.ssl = tls.context  # uvicorn hands this to create_server; reloads mutate it in place
    server = uvicorn.Server(config)
    following = asyncio.ensure_future(tls.follow())
    try:
        await server.serve(sockets=[sock])
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
