"""The HTTP/1.1 protocol the sidecar's uvicorn servers run: httptools, guarded against clients that
send too much, too slowly, or open too many connections (docs/architecture.md §8).

uvicorn instantiates the protocol class it is given per connection; `guarded_protocol` makes one
class per `ConnectionLimits`. Kept in the ingress because it is the first code that sees a client's
bytes. Every limit, its default and its flag: docs/operations.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("detour.ingress")


DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # request line plus headers; `detour serve --max-header-bytes`
DEFAULT_HEADER_TIMEOUT_SECS = 10.0  # connection open (or previous exchange done) → head complete
DEFAULT_BODY_TIMEOUT_SECS = 30.0  # head complete → body complete: 32 MiB at ~1 MiB/s
DEFAULT_KEEPALIVE_TIMEOUT_SECS = 5.0  # uvicorn's own default `timeout_keep_alive`
DEFAULT_MAX_CONNECTIONS = 1024  # per port; each costs a file descriptor and a protocol object
LINGER_AFTER_REJECT_S = 1.0  # how long a rejected connection's further input is read and dropped


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one listener allows each connection; `detour serve` flags of the same names."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout_secs: float = DEFAULT_HEADER_TIMEOUT_SECS
    body_timeout_secs: float = DEFAULT_BODY_TIMEOUT_SECS
    keepalive_timeout_secs: float = DEFAULT_KEEPALIVE_TIMEOUT_SECS
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


DEFAULT_LIMITS = ConnectionLimits()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Detour's per-connection limits (docs/architecture.md §8).

    **Head size.** httptools accepts a request line and headers of any size, and grows a header by
    concatenation, so a 100 MB header line costs seconds of CPU while every other request waits. The
    cap is kept where the bytes arrive: `data_received` counts what comes in while a head is
    incomplete (one subtraction per read) and stops feeding the parser at `max_head_bytes`; once the
    headers are complete nothing is counted until the request's message ends. A read that crosses
    the cap is fed only up to it: if the head ends within, the rest (body, the next pipelined
    request) goes on as usual, else the request is answered 431 and the connection closed.
    Counting starts where the previous message ends; the bytes that follow it within the same read
    go uncounted, so a pipelined head may exceed the cap by up to one read (256 KiB), never more.

    **Time.** Each connection has one deadline timer, re-armed once per request, never per read:
    at `connection_made` (the head timeout) and when an exchange ends (the keep-alive timeout, or
    the head timeout if that is shorter); at a head's end only if the body's deadline comes before
    the pending one (a body timeout shorter than the others). This timer replaces uvicorn's
    keep-alive timer, so a request costs one timer, as before. When it fires, `_deadline_passed`
    looks at where the connection is: no byte of a head yet → closed silently (idle); part of a
    head → 408 once the head timeout has passed; a body still arriving → 408 once the body timeout
    (counted from the head's end, `_body_due`) has passed; an exchange in flight → nothing (its end
    re-arms the timer). A body timeout also ends the request for the ASGI app (`http.disconnect`),
    so nothing is sent upstream.

    **Count.** Beyond `max_connections` open connections on this port a new connection is answered
    503 at once, without reading its request, and closed; the others are not affected. uvicorn's
    own `limit_concurrency` would answer plain text, and only once the request head has arrived.

    **Rejections** (431, 408, 503) are written at once in a body both SDKs parse, then the write
    side is shut (the client sees the answer and the end of the stream) and further input is read
    and dropped for `LINGER_AFTER_REJECT_S` or until the client closes, so a client still sending
    gets the answer rather than a reset. A head over the cap on a pipelined connection whose
    previous response is still being written gets no 431 (it would land inside that response): the
    connection closes once that response is done.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    max_head_bytes: ClassVar[int] = DEFAULT_MAX_HEADER_BYTES  # limits.max_header_bytes, read per read
    # What is left of the head's allowance: an int while a head is incomplete (0: exhausted, -1:
    # rejected, input dropped), None while a body is read.
    _head_room: int | None
    # The deadline timer, or after a rejection the end of the linger.
    _timer: asyncio.TimerHandle | None = None
    _keepalive_check: bool = False  # the timer is the keep-alive check, before the head deadline
    # After an exchange: the first wait, and whether it is the keep-alive check (set per class).
    _idle_wait: ClassVar[float] = min(DEFAULT_KEEPALIVE_TIMEOUT_SECS, DEFAULT_HEADER_TIMEOUT_SECS)
    _idle_is_keepalive: ClassVar[bool] = DEFAULT_KEEPALIVE_TIMEOUT_SECS < DEFAULT_HEADER_TIMEOUT_SECS
    _body_due: float = 0.0  # loop time by which the current body must be complete
    # Bytes still due of the body of a request whose Upgrade was ignored (-1: chunked, refused).
    _upgrade_body_left: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_room = self.max_head_bytes

    # --- connection -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._timer = self.loop.call_later(self.limits.header_timeout_secs, self._deadline_passed)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._upgrade_body_left > 0:
            data = self._take_upgrade_body(data)
            if not data:
                return
        room = self._head_room
        if room is None or len(data) <= room:
            if room is not None:
                self._head_room = room - len(data)
            self._feed(data)
            return
        if room < 0:
            return  # rejected: dropped while the connection lingers
        view = memoryview(data)
        self._head_room = 0
        if room:
            self._feed(view[:room])  # type: ignore[arg-type]  # httptools reads any buffer
            if self.transport.is_closing():  # not HTTP: uvicorn answered 400
                return
        if self._head_room == 0:  # the same head goes on, and no byte of it may follow
            self._reject_head()
        else:  # the head ended within: the rest is its body, or the next request's head
            self.data_received(view[room:])  # type: ignore[arg-type]

    def _feed(self, data: bytes) -> None:
        """uvicorn's `data_received` (its keep-alive timer is replaced by the deadline), answering a
        head the parser rejects in the error shape both SDKs parse, and ignoring an Upgrade."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            log.warning("a request the HTTP parser rejects: answered 400, connection closed")
            self._reject(_error_response(400, "invalid_http_request", "the request is not valid HTTP/1.1"))
        except httptools.HttpParserUpgrade as upgrade:
            self._ignore_upgrade(data[upgrade.args[0] :])

    # --- an Upgrade (h2c) is ignored: Detour speaks HTTP/1.1 -------------------------------------

    def _ignore_upgrade(self, rest: bytes) -> None:
        """A server may ignore `Upgrade` and answer in HTTP/1.1 (RFC 9110 §7.8), which is what
        `curl --http2 http://…` expects. llhttp ends the request at its head and hands back what
        follows as the new protocol's bytes: a fresh parser takes over, and a declared body is
        passed to the request as it arrives (`_take_upgrade_body`). A chunked body is refused (400)."""
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn's own
        if self._upgrade_body_left < 0:
            message = "a chunked request body with an Upgrade header is not supported; drop the Upgrade"
            self._reject(_error_response(400, "unsupported_upgrade", message))
        elif rest:
            self.data_received(rest)

    def _take_upgrade_body(self, data: bytes) -> bytes:
        """Pass the ignored upgrade's body to its request; return what follows it (the next head)."""
        left = self._upgrade_body_left
        body, rest = data[:left], data[left:]
        self._upgrade_body_left = left - len(body)
        self.on_body(body)
        if not self._upgrade_body_left:
            self.on_message_complete()
        return rest

    # --- parser and cycle callbacks ---------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._head_room = None
        due = self._body_due = self.loop.time() + self.limits.body_timeout_secs
        timer = self._timer
        if timer is None or timer.when() > due:  # not with the defaults: the head's fires first
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(due, self._deadline_passed)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():  # llhttp ends an Upgrade at its head: its body is still due
            self._upgrade_body_left = _declared_length(self.headers)
            if self._upgrade_body_left:
                return
        self._head_room = self.max_head_bytes  # what arrives next is the next request's head
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:  # answered before its body ended
            self._await_next_head()  # (a 413): the exchange ends here, not at the response

    def on_response_complete(self) -> None:
        # uvicorn's, with the connection's deadline in place of its keep-alive timer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a request queued behind this one starts now; its body's clock too
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            self._body_due = self.loop.time() + self.limits.body_timeout_secs
        if self._head_room is None:  # a body still arrives (answered early, or a queued request's)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(self._body_due, self._deadline_passed)
        else:
            self._await_next_head()

    def _await_next_head(self) -> None:
        """An exchange has ended: the keep-alive check (or the head deadline, if sooner) starts."""
        if self._timer is not None:
            self._timer.cancel()
        self._keepalive_check = self._idle_is_keepalive
        self._timer = self.loop.call_later(self._idle_wait, self._deadline_passed)

    # --- deadlines --------------------------------------------------------------------------------

    def _deadline_passed(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        room = self._head_room
        if room is None:  # a body is being read
            if self.pipeline:
                return  # queued behind a response in flight, unread: re-armed when that ends
            left = self._body_due - self.loop.time()
            if left > 0:
                self._timer = self.loop.call_later(left, self._deadline_passed)
            else:
                self._body_timed_out()
            return
        if room < 0 or (self.cycle is not None and not self.cycle.response_complete):
            return  # rejected and lingering, or an exchange in flight: its end re-arms the timer
        if room == self.max_head_bytes:  # not a byte of a head: an idle connection
            self.transport.close()
        elif self._keepalive_check:  # part of a head arrived within the keep-alive time
            self._keepalive_check = False
            wait = self.limits.header_timeout_secs - self.limits.keepalive_timeout_secs
            self._timer = self.loop.call_later(wait, self._deadline_passed)
        else:
            seconds = self.limits.header_timeout_secs
            log.warning("request head not complete within %g s: answered 408, connection closed", seconds)
            self._reject(_error_response(408, "request_timeout", f"request head not complete in {seconds} s"))

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_started:  # e.g. a 413 sent while the body trickles in
            self.transport.close()
            return
        seconds = self.limits.body_timeout_secs
        log.warning("request body not complete within %g s: answered 408, connection closed", seconds)
        # The request's task ends: its next receive() is http.disconnect, and its sends are dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        self._reject(_error_response(408, "request_timeout", f"request body not complete in {seconds} s"))

    # --- rejections -------------------------------------------------------------------------------

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Over the cap: answered before reading anything, never added to the connection set."""
        self.transport = transport
        log.warning("%d connections open: a new one answered 503", len(self.connections))
        self._reject(_error_response(503, "too_many_connections", _TOO_MANY, retry_after=True))

    def _reject_head(self) -> None:
        log.warning("request head over %d bytes: answered 431, connection closed", self.max_head_bytes)
        if self.cycle is not None and not self.cycle.response_complete:
            self._head_room = -1
            self.cycle.keep_alive = False  # a response is in flight: close once it is done
            return
        message = f"request line and headers exceed {self.max_head_bytes} bytes"
        self._reject(_error_response(431, "request_header_fields_too_large", message))

    def _reject(self, response: bytes) -> None:
        """Write `response`, shut the write side, drop what still arrives, close within the linger."""
        self._head_room = -1
        if self._timer is not None:
            self._timer.cancel()
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self.loop.call_later(LINGER_AFTER_REJECT_S, self.transport.close)
        else:  # pragma: no cover - TCP transports can always half-close
            self._timer = None
            self.transport.close()


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The body length a request's head declares: 0 for none, -1 for a chunked body."""
    if any(name == b"transfer-encoding" for name, _ in headers):
        return -1
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # llhttp has checked it is a number
    return 0


_TOO_MANY = "too many open connections to the sidecar; retry shortly"
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
# The error `type` both SDKs accept for the status (Anthropic's names; OpenAI's SDKs go by status).
_TYPES = {
    400: "invalid_request_error",
    408: "invalid_request_error",
    431: "invalid_request_error",
    503: "overloaded_error",
}


@functools.cache
def _error_response(status: int, code: str, message: str, *, retry_after: bool = False) -> bytes:
    """A whole response whose body both SDKs parse: the OpenAI and the Anthropic error shapes at
    once (the protocol answers before the request's dialect is known)."""
    body = orjson.dumps(
        {
            "type": "error",
            "error": {"type": _TYPES[status], "message": message, "param": None, "code": code},
        }
    )
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        + ("retry-after: 1\r\n" if retry_after else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@functools.cache
def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class for one set of limits (uvicorn instantiates the class it is given)."""
    name = f"GuardedProtocol{limits.max_header_bytes}"
    keepalive, head = limits.keepalive_timeout_secs, limits.header_timeout_secs
    attributes = {
        "limits": limits,
        "max_head_bytes": limits.max_header_bytes,
        "_idle_wait": min(keepalive, head),
        "_idle_is_keepalive": keepalive < head,
    }
    return type(name, (GuardedProtocol,), attributes)
