"""The HTTP ingress: a plain ASGI app (no framework on the hot path).

Routes are a dict lookup on (method, path). The chat endpoints read the body, hand the router an
`InboundRequest` and write its `RoutedResponse`; a stream is pumped while a second task listens for
the client going away, so a disconnect closes the upstream stream at once. Once a response has
started nothing may render an error response any more — a late failure goes in-band (docs/architecture.md §3).

When the router has a `RequestTracing` (telemetry), each chat request gets a `RequestTrace` opened
before the body is read and ended with the status actually sent — for a stream, once it has ended.
The client's `traceparent` travels to it raw, inside `ClientHeaders`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.errors import render_error
from sidecar.dialects.inbound import parse_request
from sidecar.errors import DetourError, RequestError
from sidecar.ingress.errors import error_response
from sidecar.providers.client import ClientHeaders
from sidecar.routing.exchange import InboundRequest, RoutedResponse
from sidecar.routing.failover import Router
from sidecar.routing.models_list import list_models

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("detour.ingress")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # `detour serve --max-body-bytes`; 413 beyond
PROBE_PATHS = ("/healthz", "/readyz")
ADMIN_PREFIX = "/admin/"
_JSON = (b"content-type", b"application/json")


class Runtime(Protocol):
    """What the ingress needs from the running sidecar (built in `sidecar.app`)."""

    router: Router

    def describe_config_source(self) -> dict[str, Any] | None: ...


class DetourASGI:
    """The sidecar's HTTP API. With `probes_only`, just `/healthz` and `/readyz`: that variant is
    what `detour serve --health-port` exposes on every interface for the kubelet, while the API
    itself (which spends the pod's provider keys) stays on 127.0.0.1. With `admin_only`, just
    `/admin/*`, for `detour serve --admin-port`; the API port's app then has `admin=False`, so
    `/admin/*` is 404 there (docs/operations.md, "What is safe to expose").

    `max_body_bytes` caps a request body (413 in the client's dialect beyond)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        probes_only: bool = False,
        admin_only: bool = False,
        admin: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("POST", "/chat/completions"): self._openai_chat,
            ("POST", "/v1/messages"): self._anthropic_messages,
            ("GET", "/v1/models"): self._models,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/admin/state"): self._admin_state,
        }
        if probes_only:
            self._only(lambda path: path in PROBE_PATHS)
        elif admin_only:
            self._only(lambda path: path.startswith(ADMIN_PREFIX))
        elif not admin:
            self._only(lambda path: not path.startswith(ADMIN_PREFIX))

    def _only(self, keep: Callable[[str], bool]) -> None:
        self._routes = {key: handler for key, handler in self._routes.items() if keep(key[1])}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # uvicorn runs with lifespan="off": no other scope arrives
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            dialect = Dialect.ANTHROPIC if scope["path"].startswith("/v1/messages") else Dialect.OPENAI
            known_path = any(path == scope["path"] for _, path in self._routes)
            status = 405 if known_path else 404
            message = "method not allowed" if known_path else f"unknown path {scope['path']}"
            await _send_whole(send, status, [], render_error(dialect, status, message))
            return
        await handler(scope, receive, send)

    async def _openai_chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._chat(Dialect.OPENAI, scope, receive, send)

    async def _anthropic_messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._chat(Dialect.ANTHROPIC, scope, receive, send)

    async def _chat(self, dialect: Dialect, scope: Scope, receive: Receive, send: Send) -> None:
        client_headers = ClientHeaders.from_asgi(dialect, scope["headers"])
        tracing = self.runtime.router.tracing
        trace = tracing.start_request(dialect, scope["path"], client_headers) if tracing is not None else None
        status: int | None = None  # the status sent, for the trace
        try:
            try:
                raw = await _read_body(receive, self.max_body_bytes)
                parsed = parse_request(dialect, raw)
                request = InboundRequest(
                    dialect=dialect,
                    body=parsed.body,
                    raw=raw,
                    model=parsed.model,
                    stream=parsed.stream,
                    headers=client_headers,
                )
                response = await self.runtime.router.route(request, trace)  # 503 while no config
            except DetourError as exc:
                status, headers, body = error_response(dialect, exc)
                await _send_whole(send, status, headers, body)
                return
            except Exception:
                log.exception("unexpected error while routing")
                status = 500
                await _send_whole(send, 500, [], render_error(dialect, 500, "internal error in the sidecar"))
                return
            headers = [
                *response.headers,
                ("x-detour-provider", response.provider_id),
                ("x-detour-model", response.model),
                ("x-detour-attempts", str(response.attempts)),
            ]
            status = response.status
            if response.stream is None:
                await _send_whole(send, response.status, headers, response.body, response.content_type)
            else:
                await _send_stream(receive, send, response, headers)
        finally:
            if trace is not None:
                trace.end(status)  # after the last byte: telemetry settles off the client's wait

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        table = self.runtime.router.table
        anthropic = any(name == b"anthropic-version" for name, _ in scope["headers"])
        body = list_models(table, anthropic_shape=anthropic)
        await _send_whole(send, 200, [], orjson.dumps(body))

    async def _healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_whole(send, 200, [], b'{"status":"ok"}')

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        table = self.runtime.router.table
        if table is None:
            await _send_whole(send, 503, [], b'{"status":"not ready","reason":"no valid config loaded yet"}')
        else:
            await _send_whole(
                send, 200, [], orjson.dumps({"status": "ready", "config_version": table.version})
            )

    async def _admin_state(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.runtime.router.describe_state()
        state["reload"] = self.runtime.describe_config_source()
        await _send_whole(send, 200, [], orjson.dumps(state, option=orjson.OPT_INDENT_2))


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # also when the body timed out (http_protocol.py)
            raise RequestError("the client disconnected before sending the whole body", status=499)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is larger than {limit} bytes", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header values can carry client- or provider-chosen text (a model name, a request id): never
    let one break the response, or split it (CR/LF), or fail to encode."""
    return [(name.encode("latin-1"), _header_value(value)) for name, value in headers]


def _header_value(value: str) -> bytes:
    """UTF-8 as it came (a provider's request id is handed back byte for byte: httpx decoded it as
    UTF-8, and UTF-8 never encodes CR or LF inside a multi-byte character); a value holding any
    control character is percent-encoded instead, so it can never split the response."""
    if value.isprintable():
        return value.encode("utf-8")
    return quote(value, safe=" !#$%&'()*+,-./:;<=>?@[]^_`{|}~").encode("ascii")


async def _send_whole(
    send: Send,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    content_type: str = "application/json",
) -> None:
    raw_headers = _encode_headers(headers)
    raw_headers.append((b"content-type", content_type.encode("latin-1")) if content_type else _JSON)
    raw_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_stream(
    receive: Receive, send: Send, response: RoutedResponse, headers: list[tuple[str, str]]
) -> None:
    assert response.stream is not None
    raw_headers = _encode_headers(headers)
    raw_headers += [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]
    stream = response.stream

    async def pump() -> None:
        await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
        async for frame in stream:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(until_disconnect())
    try:
        await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await stream.aclose()
        if response.release is not None:
            await response.release()
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
        log.warning("stream to the client failed: %s", pumping.exception())
