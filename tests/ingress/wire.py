"""Raw HTTP/1.1 on 127.0.0.1 for the ingress tests: every byte a test sends is its own, and it sees
exactly what the server writes and when it closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


def head(size: int, *, method: str = "GET", path: str = "/healthz", extra: str = "") -> bytes:
    """A request head of exactly `size` bytes, padded with an `x-pad` header."""
    start = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}x-pad: "
    end = "\r\n\r\n"
    padding = size - len(start) - len(end)
    assert padding >= 0
    return (start + "a" * padding + end).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length: status, headers (lower-cased names) and body."""
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
