"""Raw HTTP/1.1 on 127.0.0.1, so every byte a hardening case sends is the case's own, and the
error-shape checks of docs/architecture.md §4 (OpenAI `{"error": {...}}`, Anthropic
`{"type": "error", "error": {...}}`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Shape = Literal["openai", "anthropic", "both"]


@dataclass
class RawResponse:
    status: int
    head: bytes  # status line and headers, as sent
    headers: list[tuple[bytes, bytes]]  # names lower-cased
    body: bytes
    rest: bytes | None  # what followed the response until the server closed (None: still open)

    def header(self, name: str) -> bytes | None:
        key = name.lower().encode()
        return next((value for found, value in self.headers if found == key), None)

    @property
    def content_type(self) -> bytes:
        return self.header("content-type") or b""

    def json(self) -> Any:
        return orjson.loads(self.body)


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """One response: a Content-Length body, a chunked body, or a body up to the end of the stream.
    Interim answers (100 Continue) are skipped."""
    head = await reader.readuntil(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1"):
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    found = dict(headers)
    if b"content-length" in found:
        body = await reader.readexactly(int(found[b"content-length"]))
    elif found.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
    return RawResponse(int(status_line.split()[1]), head, headers, body, None)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def exchange(
    port: int,
    request: bytes | Sequence[bytes],
    *,
    started: asyncio.Event | None = None,
    until_closed: bool = False,
    within_s: float = 10.0,
) -> RawResponse:
    """Send `request` (pieces written in order, each drained) on a new connection and read one
    response. The server may answer before it has read everything (413, 431): writing stops quietly
    once the connection is refused. With `until_closed`, whatever follows the response is read up to
    the server's close (`rest`), so a second, smuggled answer would show there."""
    pieces = [request] if isinstance(request, bytes) else list(request)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                if started is not None:
                    started.set()

    sending = asyncio.ensure_future(send())
    try:
        async with asyncio.timeout(within_s):
            response = await read_response(reader)
            if until_closed:
                response.rest = await reader.read()
        return response
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        if started is not None:
            started.set()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: Sequence[tuple[str, str]] = (),
    content_length: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers)]
    if content_length:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- error shapes ----------------------------------------------------------------------------------


def assert_error_shape(body: bytes, shape: Shape) -> dict[str, Any]:
    """The body is an error in `shape` ("both": the ingress's head-level answers, which both SDKs
    parse); returns the inner `error` object."""
    error_body = orjson.loads(body)
    assert isinstance(error_body, dict), error_body
    error = error_body.get("error")
    assert isinstance(error, dict), error_body
    for field in ("message", "type"):
        assert isinstance(error.get(field), str), error_body
        assert error[field], error_body
    if shape == "openai":
        assert set(error_body) == {"error"}, f"not an OpenAI error: {error_body}"
        assert {"param", "code"} <= set(error), f"an OpenAI error carries param and code: {error_body}"
    elif shape == "anthropic":
        assert error_body.get("type") == "error", f"not an Anthropic error: {error_body}"
        assert set(error_body) <= {"type", "error", "request_id"}, error_body
    else:
        assert error_body.get("type") == "error", error_body
        assert {"param", "code"} <= set(error), error_body
    return error
