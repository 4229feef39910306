"""A tiny OpenAI-dialect upstream that writes raw bytes and records raw request bodies.

The simulated providers (`sidecar.simulate`) answer like the real APIs and record parsed bodies;
a few hardening cases need what they cannot give: the exact bytes a provider received (a
duplicated JSON key survives only there), and answers no real API sends on purpose — a 200 whose
body is not JSON, or JSON that is no chat completion, a header that is not ASCII, an SSE event
that never ends. The answer is chosen by the model the request names, so concurrent cases never
share a script.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

MiB = 1024 * 1024


@dataclass
class Received:
    head: bytes
    body: bytes

    def _field(self, name: str) -> object:
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None
        return parsed.get(name) if isinstance(parsed, dict) else None

    @property
    def model(self) -> str | None:
        model = self._field("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return self._field("stream") is True


Writer = Callable[[asyncio.StreamWriter, Received], Awaitable[None]]


def completion(model: str, text: str = "raw upstream says hi") -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion",
            "created": 1_750_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )


def whole(
    status: int, body: bytes, *, headers: bytes = b"", content_type: bytes = b"application/json"
) -> Writer:
    """A response with a Content-Length body; `headers` are raw header lines (each ending CRLF)."""

    async def write(writer: asyncio.StreamWriter, received: Received) -> None:
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
            % (status, content_type, len(body), headers)
            + body
        )
        await writer.drain()

    return write


def chunk(model: str, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    body = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": model}
    return b"data: " + orjson.dumps({**body, "choices": [choice]}) + b"\n\n"


async def ok(writer: asyncio.StreamWriter, received: Received) -> None:
    """A chat completion, streamed when the request (as this upstream parses it) says so."""
    model = received.model or "?"
    if not received.stream:
        await whole(200, completion(model))(writer, received)
        return
    events = [
        chunk(model, {"role": "assistant", "content": ""}),
        chunk(model, {"content": "raw upstream says hi"}),
        chunk(model, {}, "stop"),
        b"data: [DONE]\n\n",
    ]
    payload = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events) + b"0\r\n\r\n"
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + payload
    )
    await writer.drain()


def unfinished_event(size: int) -> Writer:
    """A 200 SSE stream whose first event never ends: `size` bytes of one `data:` line, then silence."""

    async def write(writer: asyncio.StreamWriter, received: Received) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: ")
        block = b"x" * MiB
        for _ in range(size // MiB):
            writer.write(block)
            await writer.drain()
        await asyncio.Event().wait()  # until Detour gives up and the connection is dropped

    return write


async def reset(writer: asyncio.StreamWriter, received: Received) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class RawUpstream:
    """`async with RawUpstream() as raw:`; `raw.answers[model] = writer` picks the answer per model
    (`ok` otherwise); `raw.received` holds every request, raw."""

    def __init__(self) -> None:
        self.answers: dict[str, Writer] = {}
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    def bodies_for(self, model: str) -> list[bytes]:
        return [request.body for request in self.received if request.model == model]

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:  # keep-alive: one request after another
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                received = Received(head, await reader.readexactly(length))
                self.received.append(received)
                await self.answers.get(received.model or "", ok)(writer, received)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
