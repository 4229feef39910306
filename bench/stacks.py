"""Detour on alternative stacks, for measuring what each part of today's stack costs:
`python -m bench.stacks NAME serve --config FILE --port N` runs the real `detour serve` with one
thing swapped, chosen by NAME:

- ``quiet-httpx``: httpx's per-request INFO log line ("HTTP Request: POST …") silenced;
- ``httpx-default``: httpx's own transport (httpcore) instead of httpx-aiohttp;
- ``aiohttp``: a `Transport` straight on `aiohttp.ClientSession`, no httpx at all;
- ``aiohttp-quiet``: both of the above that help (aiohttp transport, no per-request log line);
- ``aiohttp-gc``: the aiohttp transport with start-up objects frozen out of the cyclic GC (`gc.freeze`);
- ``workers2``: two Detour processes sharing the port through SO_REUSEPORT, each with its own state;
- ``no-gc``: Detour with the cyclic GC disabled (a measurement, not a setting to ship).

The swap happens at run time, in this process only (the sidecar's code is not changed): the
transport through `Sidecar`'s `transport_factory` argument, the logging through the logger's level.
Only the benchmark uses this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx

from sidecar.errors import UpstreamConnectError, UpstreamStreamError, UpstreamTimeout
from sidecar.providers.http import HttpxTransport, Timeouts, UpstreamRequest


class AiohttpResponse:
    """Duck-types `sidecar.providers.http.UpstreamResponse` over an aiohttp response."""

    __slots__ = ("_on_close", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._on_close: Callable[[], None] | None = None
        self.status = response.status
        self.headers: dict[str, str] = {}
        for key, value in response.headers.items():
            name = key.lower()
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamStreamError(f"upstream connection failed: {exc!r}") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("upstream timed out while sending the body") from exc
        finally:
            await self.close()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamStreamError(f"upstream connection failed: {exc!r}") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("upstream stream timed out") from exc

    def when_closed(self, callback: Callable[[], None]) -> None:
        self._on_close = callback

    async def close(self) -> None:
        self._response.release()
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback()


class AiohttpTransport:
    """The two-method `Transport` on one pooled `aiohttp.ClientSession` (created on first use, inside
    the running loop)."""

    def __init__(self, *, max_connections: int = 256) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=("User-Agent",),
            cookie_jar=aiohttp.DummyCookieJar(),  # a proxy must not carry one client's cookies to the next
        )
        return self._session

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> AiohttpResponse:
        session = self._session or self._open()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s
        )
        try:
            response = await session.request(
                request.method,
                request.url,
                headers=list(request.headers),
                data=request.content,
                timeout=timeout,
            )
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectError(f"upstream connection failed: {exc!r}") from exc
        return AiohttpResponse(response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpcoreTransport(HttpxTransport):
    """`HttpxTransport` with httpx's default transport (httpcore) instead of httpx-aiohttp."""

    def __init__(self, *, max_connections: int = 256) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(limits=limits, timeout=None, trust_env=False)


def _quiet() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _use_transport(factory: Callable[[], object]) -> None:
    import sidecar.cli.serve

    serve_module: Any = sidecar.cli.serve  # patched at run time: the stacks swap one part of Detour
    serve_module.Sidecar = functools.partial(serve_module.Sidecar, transport_factory=factory)


def _aiohttp_gc() -> None:
    """The aiohttp transport, plus start-up objects frozen out of the cyclic GC's reach."""
    import gc
    import importlib

    importlib.import_module("sidecar.app")  # the heavy imports happen here, before the freeze
    _use_transport(AiohttpTransport)
    gc.collect()
    gc.freeze()


def _aiohttp_quiet() -> None:
    _use_transport(AiohttpTransport)
    _quiet()


def _two_workers() -> None:
    """Two `detour serve` processes on one port (SO_REUSEPORT: the kernel spreads connections),
    each its own event loop, neither knowing the other: the parent forks before anything binds.
    The harness counts the CPU of a process and its children, so both are measured."""
    import os
    import socket

    import sidecar.cli.serve

    serve_module: Any = sidecar.cli.serve

    def bind_shared(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        return sock

    serve_module.bind_socket = bind_shared
    if os.fork() == 0:  # the second worker: it stops with the first (the harness signals only that one)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _no_gc() -> None:
    """No cyclic GC at all (reference counting only): what the collector costs, by its absence."""
    import gc

    gc.disable()


SETUPS: dict[str, Callable[[], None]] = {
    "no-gc": _no_gc,
    "workers2": _two_workers,
    "quiet-httpx": _quiet,
    "httpx-default": lambda: _use_transport(HttpcoreTransport),
    "aiohttp": lambda: _use_transport(AiohttpTransport),
    "aiohttp-quiet": _aiohttp_quiet,
    "aiohttp-gc": _aiohttp_gc,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SETUPS:
        print(f"usage: python -m bench.stacks {{{','.join(SETUPS)}}} serve …", file=sys.stderr)
        return 2
    SETUPS[argv[0]]()
    from sidecar.cli.main import main as detour_main

    with contextlib.suppress(asyncio.CancelledError):
        return detour_main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
