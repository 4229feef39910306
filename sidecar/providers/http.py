"""The upstream HTTP seam: the only module that imports an HTTP client library.

Everything above it sees a two-method `Transport` (send, close) and an `UpstreamResponse` whose body
is read whole or streamed. A body read whole is bounded (docs/architecture.md §8): it is read chunk by
chunk and abandoned at `max_body_bytes` (the provider's `max_response_bytes`), which makes it a
broken answer (`UpstreamStreamError`) — never a partial one.

The transport is httpx's `AsyncClient` over the aiohttp transport (`httpx-aiohttp`):
docs/architecture.md §7 measured httpx's default transport at a quarter of the throughput the targets
need, and the aiohttp transport keeps httpx's API while reaching them. `bench/` re-measures.

Foreign exceptions are mapped into `sidecar.errors` here, once. httpx-aiohttp reports a connection
reset as `httpx.ConnectTimeout`, so the original aiohttp exception (its `__cause__`) decides whether
an attempt timed out or lost its connection — the router treats those two differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from sidecar.config.models import DEFAULT_MAX_RESPONSE_BYTES
from sidecar.errors import UpstreamConnectError, UpstreamError, UpstreamStreamError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float | None


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: Sequence[tuple[str, str]]
    content: bytes
    method: str = "POST"


class UpstreamResponse:
    """A response whose headers have arrived; the body is read with `read` or `iter_bytes`."""

    __slots__ = ("_on_close", "_response", "headers", "max_body_bytes", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._on_close: Callable[[], None] | None = None
        self.status = response.status_code
        self.headers = _header_dict(response.headers.raw)
        # The most `read` buffers; the provider client sets its provider's `max_response_bytes`.
        self.max_body_bytes = DEFAULT_MAX_RESPONSE_BYTES

    async def read(self) -> bytes:
        """The whole body (decoded, as the provider meant it), then the response is closed.

        Raises `UpstreamStreamError` as soon as the body is known to exceed `max_body_bytes`: from a
        larger `content-length` before reading anything, else at the chunk that crosses it."""
        limit = self.max_body_bytes
        try:
            with _mapped_errors(after_headers=True):
                declared = self.headers.get("content-length", "")
                if declared.isdecimal() and (len(declared) > 18 or int(declared) > limit):
                    raise _too_large(limit, f"its content-length is {declared[:24]}")  # read nothing
                chunks: list[bytes] = []
                size = 0
                chunks_in = self._body_chunks()
                async with contextlib.aclosing(chunks_in) as body:
                    async for chunk in body:
                        size += len(chunk)
                        if size > limit:
                            raise _too_large(limit, "it was abandoned there")
                        chunks.append(chunk)
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            await self.close()

    def _body_chunks(self) -> AsyncGenerator[bytes, None]:
        """The body's chunks: decoded by httpx when the provider encoded it (gzip, br, ...), else
        straight from the transport's stream: httpx's layers over it (decoder, chunker, byte
        counters, request context) were 6 % of a plain request's instructions, for bytes passed on
        as they came (docs/benchmarks.md). An async generator either way, so reading can stop at
        the cap and close it at once."""
        if "content-encoding" in self.headers:
            return cast(AsyncGenerator[bytes, None], self._response.aiter_bytes())
        chunks = _transport_chunks(self._response)
        if isinstance(chunks, AsyncGenerator):
            return chunks
        return _generator_of(chunks)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, as the provider sent it (a stream is passed on undecoded); the
        reader closes the response when it is done with it."""
        with _mapped_errors(after_headers=True):
            async for chunk in _transport_chunks(self._response):
                yield chunk

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when this response is closed (the provider tracks what is in flight)."""
        self._on_close = callback

    async def close(self) -> None:
        # Closing a broken connection must not hide the error that broke it.
        with contextlib.suppress(httpx.HTTPError, aiohttp.ClientError, OSError):
            await self._response.aclose()
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback()


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse: ...

    async def close(self) -> None: ...


class HttpxTransport:
    """One pooled connection pool per provider, long-lived across requests and reloads.

    Requests go straight to httpx's transport interface (`handle_async_request`), not through
    `AsyncClient.send`: a forwarding proxy needs none of the client's redirect, auth, cookie or
    event-hook pipeline, and that pipeline was a fifth of the per-request CPU (docs/benchmarks.md).
    The aiohttp session keeps no cookies — a provider's Set-Cookie must never reach another client's
    request — and does not decompress, so bodies pass through as the provider sent them.
    """

    def __init__(self, *, max_connections: int = 256) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._transport = AiohttpTransport(limits=limits, trust_env=False, client=self._new_session)
        self._max_connections = max_connections
        self._urls: dict[str, httpx.URL] = {}  # parsed once: a provider sends to one or two URLs

    def _new_session(self) -> aiohttp.ClientSession:
        # Created lazily, on the first request, inside the running event loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._transport.ssl_context)
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False
        )

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        timeout = {
            "connect": timeouts.connect_s,
            "read": timeouts.read_s,
            "write": timeouts.read_s,
            "pool": None,
        }
        url = self._urls.get(request.url)
        if url is None:
            url = self._urls[request.url] = httpx.URL(request.url)
        http_request = _transport_request(request, url, {"timeout": timeout})
        with _mapped_errors():
            response = await self._transport.handle_async_request(http_request)
        return UpstreamResponse(response)

    async def close(self) -> None:
        await self._transport.aclose()


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased names; a repeated header joined with ", ", as the rate-limit parsers expect one
    value. Decoded as httpx's `Headers.items()` would — UTF-8 (so ASCII) when every name and value
    is, else Latin-1 for all — without first scanning them all to find out."""
    try:
        return _decoded(raw, "utf-8")
    except UnicodeDecodeError:
        return _decoded(raw, "latin-1")


def _decoded(raw: list[tuple[bytes, bytes]], encoding: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.lower().decode(encoding)
        text = value.decode(encoding)
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _transport_request(request: UpstreamRequest, url: httpx.URL, extensions: dict[str, Any]) -> httpx.Request:
    """The request as a transport receives it: the body as a stream already read, so httpx adds no
    headers of its own — aiohttp sets `Host` and `Content-Length` from the URL and the body, as
    it does for any request — and the headers declared ASCII, so that nothing scans them to find
    their encoding again (aiohttp reads them back as text). Building it the way `content=` does
    was a tenth of a plain request's instructions (docs/benchmarks.md).

    A value beyond ASCII can only be a client's forwarded header (config values are checked at
    load): it arrived decoded as Latin-1, so it is passed on as the bytes the client sent, which
    reach the provider unchanged when they are UTF-8 — aiohttp writes header text as UTF-8."""
    body = httpx.ByteStream(request.content)
    try:
        built = httpx.Request(
            request.method, url, headers=request.headers, stream=body, extensions=extensions
        )
    except UnicodeEncodeError:
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
        built = httpx.Request(request.method, url, headers=raw, stream=body, extensions=extensions)
    else:
        built.headers.encoding = "ascii"  # each value was just encoded as ASCII, or it would have raised
    built.read()  # the transport sends `content` when it has been read, else a chunked stream
    return built


def _transport_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's chunks from the transport's own stream (an async transport's: async)."""
    return aiter(cast(httpx.AsyncByteStream, response.stream))


async def _generator_of(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    async for chunk in chunks:
        yield chunk


def _too_large(limit: int, detail: str) -> UpstreamStreamError:
    return UpstreamStreamError(f"upstream body is larger than max_response_bytes ({limit} bytes); {detail}")


_USERINFO = re.compile(r"://[^/@\s]*@")


class _mapped_errors:
    """Map httpx/aiohttp failures into `sidecar.errors`, once for all callers: a timeout, a connection
    that failed before the response (`UpstreamConnectError`), or a body that broke after the headers
    arrived (`UpstreamStreamError`)."""

    __slots__ = ("_broken",)

    def __init__(self, *, after_headers: bool = False) -> None:
        self._broken = UpstreamStreamError if after_headers else UpstreamConnectError

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        """Never swallows: either re-raises as a Detour error or lets the original through."""
        if exc is None or isinstance(exc, UpstreamError | asyncio.CancelledError):
            return
        cause = exc.__cause__ or exc
        if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError) or (
            isinstance(exc, httpx.TimeoutException) and cause is exc
        ):
            raise UpstreamTimeout(f"upstream timed out: {type(cause).__name__}") from exc
        if isinstance(exc, httpx.HTTPError | aiohttp.ClientError | OSError):
            raise self._broken(f"upstream connection failed: {_describe(cause)}") from exc


def _describe(exc: BaseException) -> str:
    # Error texts may quote the URL; a base_url with user:token@ must not reach the log.
    text = _USERINFO.sub("://", str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
