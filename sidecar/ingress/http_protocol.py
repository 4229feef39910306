"""The HTTP/1.1 protocol the sidecar's uvicorn servers run: httptools, with a cap on request heads.

uvicorn instantiates the protocol class it is given per connection; `header_capped_protocol` makes
one class per cap. Kept in the ingress because it is the first code that sees a client's bytes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("detour.ingress")


DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # request line plus headers; `detour serve --max-header-bytes`
LINGER_AFTER_431_S = 1.0  # how long a rejected connection's further input is read and dropped


class HeaderCappedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on each request's head (docs/architecture.md §8).

    httptools accepts a request line and headers of any size, and grows a header by concatenation,
    so a 100 MB header line costs seconds of CPU while every other request waits. The cap is kept
    where the bytes arrive: `data_received` counts what comes in while a head is incomplete (one
    subtraction per read) and stops feeding the parser at `max_head_bytes`; once the headers are
    complete nothing is counted until the request's message ends. A read that crosses the cap is fed
    only up to it: if the head ends within, the rest (body, the next pipelined request) goes on
    as usual, else the request is answered 431 and the connection closed.

    The 431 is written at once, then the write side is shut (the client sees the answer and the
    end of the stream) and further input is read and dropped for `LINGER_AFTER_431_S` or until the
    client closes, so a client still sending its head gets the answer rather than a reset. A head
    over the cap on a pipelined connection whose previous response is still being written gets no
    431 (it would land inside that response): the connection closes once that response is done.

    Counting starts where the previous message ends; the bytes that follow it within the same read
    go uncounted, so a pipelined head (sent before the previous answer came) may exceed the cap by
    up to one read (256 KiB), never more.
    """

    max_head_bytes = DEFAULT_MAX_HEADER_BYTES
    # What is left of the head's allowance: an int while a head is incomplete (0: exhausted, -1:
    # rejected, input dropped), None while a body is read.
    _head_room: int | None
    _linger: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_room = self.max_head_bytes

    def data_received(self, data: bytes) -> None:
        room = self._head_room
        if room is None or len(data) <= room:
            if room is not None:
                self._head_room = room - len(data)
            super().data_received(data)
            return
        if room < 0:
            return  # rejected: dropped while the connection lingers
        view = memoryview(data)
        self._head_room = 0
        if room:
            super().data_received(view[:room])  # type: ignore[arg-type]  # httptools reads any buffer
            if self.transport.is_closing():  # not HTTP: uvicorn answered 400
                return
        if self._head_room == 0:  # the same head goes on, and no byte of it may follow
            self._reject_head()
        else:  # the head ended within: the rest is its body, or the next request's head
            self.data_received(view[room:])  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        self._head_room = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_room = self.max_head_bytes  # what arrives next is the next request's head
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)

    def _reject_head(self) -> None:
        self._head_room = -1
        log.warning("request head over %d bytes: answered 431, connection closed", self.max_head_bytes)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a response is in flight: close once it is done
            return
        self.transport.write(_head_too_large_response(self.max_head_bytes))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_AFTER_431_S, self.transport.close)
        else:  # pragma: no cover - TCP transports can always half-close
            self.transport.close()


@functools.cache
def _head_too_large_response(limit: int) -> bytes:
    """A 431 whose body both SDKs parse: the OpenAI and the Anthropic error shapes at once."""
    message = f"request line and headers exceed {limit} bytes"
    body = orjson.dumps(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": message,
                "param": None,
                "code": "request_header_fields_too_large",
            },
        }
    )
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@functools.cache
def header_capped_protocol(max_header_bytes: int) -> type[HeaderCappedProtocol]:
    """The protocol class for one cap (uvicorn instantiates the class it is given)."""
    if max_header_bytes < 1:
        raise ValueError("max_header_bytes must be positive")
    name = f"HeaderCappedProtocol{max_header_bytes}"
    return type(name, (HeaderCappedProtocol,), {"max_head_bytes": max_header_bytes})
