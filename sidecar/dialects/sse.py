"""Server-sent events framing, as a pure state machine: bytes in, events out.

Upstream streams arrive in arbitrary chunks (an event may be split across reads, or many events may
share one). `SseDecoder.feed` buffers the partial tail and returns the complete events, each with
its raw bytes so a same-dialect stream can be forwarded byte for byte. No I/O, no JSON: the dialect
modules decide what an event means.
"""

from __future__ import annotations

import re
from typing import NoReturn

from sidecar.errors import SseFramingError

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


class SseEvent:
    """One dispatched event. `event` is None when the stream did not name it (the spec's "message").

    A plain slotted class rather than a frozen dataclass, because one is built per streamed event
    and a frozen dataclass's `__init__` (an `object.__setattr__` per field) was visible in the
    stream profile. Treat it as immutable: equality and hashing go by (data, event, raw), as the
    dataclass's did."""

    __slots__ = ("data", "event", "raw")

    def __init__(self, data: str, event: str | None = None, raw: bytes = b"") -> None:
        self.data = data
        self.event = event
        self.raw = raw

    def __repr__(self) -> str:
        return f"SseEvent(data={self.data!r}, event={self.event!r}, raw={self.raw!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SseEvent):
            return NotImplemented
        return self.data == other.data and self.event == other.event and self.raw == other.raw

    def __hash__(self) -> int:
        return hash((self.data, self.event, self.raw))

    def encode(self) -> bytes:
        """Bytes of this event, reusing the upstream's framing when we have it."""
        return self.raw or encode_event(self.data, self.event)


def encode_event(data: str, event: str | None = None) -> bytes:
    lines = [f"event: {event}\n"] if event else []
    # Any line break inside data must become a new data line, or the text after it would be lost
    # (or, worse, read as a field of its own).
    lines.extend(f"data: {line}\n" for line in _LINE_BREAKS.split(data))
    lines.append("\n")
    return "".join(lines).encode()


MAX_PENDING_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class SseDecoder:
    """Incremental SSE parser (WHATWG framing: CR, LF or CRLF line ends, mixed freely; `:` comments
    ignored; a leading BOM dropped). Line ends are normalised to LF, so `raw` uses LF framing.

    Linear in the bytes fed, however they are chunked: each chunk's line ends are normalised once,
    on arrival (a CR that ends a chunk becomes LF at once, and an LF opening the next chunk is then
    the rest of its CRLF), so the only delimiter left is `\n\n`, and a new chunk is searched for it
    alone plus one byte of overlap with the unfinished tail. A tail that keeps growing is appended
    to in place (a bytearray) and copied once more, when its event ends."""

    __slots__ = ("_bom", "_buffer", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buffer: bytes | bytearray = b""  # the unfinished event, normalised
        self._started = False
        self._bom = b""  # the first bytes of the stream while they may still be a split BOM
        self._skip_lf = False  # the previous chunk ended in a CR that we already read as a line end

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if not self._started:
            chunk = self._bom + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._bom = chunk  # wait for the rest: a BOM split across reads is still a BOM
                return []
            self._bom, self._started = b"", True
            chunk = chunk.removeprefix(_BOM)
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if chunk.find(b"\r") >= 0:  # rare: every provider we know frames with LF (`in` is slower)
            # A CR at the end is a line end whatever follows; an LF opening the next chunk is its CRLF.
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk:
            return []
        pending = self._buffer
        start = 0
        if pending:
            # Only the new bytes can hold the blank line, or straddle the tail's last byte and the first.
            if chunk.find(b"\n\n") < 0 and not (chunk[0] == 0x0A and pending[-1] == 0x0A):
                if type(pending) is bytes:
                    self._buffer = pending = bytearray(pending)
                pending += chunk
                if len(pending) > MAX_PENDING_BYTES:
                    self._too_long()
                return []
            start = len(pending) - 1
            if type(pending) is bytes:
                buffer = pending + chunk  # the usual split: an event across two reads
            else:
                pending += chunk
                buffer = bytes(pending)
        else:
            buffer = chunk
        events: list[SseEvent] = []
        block_start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            start = end + 2
            event = _parse_block(buffer[block_start:start])
            block_start = start
            if event is not None:
                events.append(event)
        self._buffer = buffer[block_start:] if block_start else buffer
        if len(self._buffer) > MAX_PENDING_BYTES:
            self._too_long()
        return events

    def _too_long(self) -> NoReturn:
        # A provider that never ends an event would otherwise grow this buffer without bound. Not an
        # upstream error: this module only frames bytes; the router decides what a bad stream is.
        raise SseFramingError(f"an SSE event grew past {MAX_PENDING_BYTES} bytes without ending")

    def flush(self) -> list[SseEvent]:
        """Events left when the stream ended without the final blank line."""
        tail = bytes(self._buffer)
        self._buffer, self._bom = b"", b""
        if not tail.strip():
            return []
        event = _parse_block(tail.rstrip(b"\n") + b"\n\n")
        return [event] if event is not None else []

    @property
    def pending(self) -> bool:
        return bool(self._bom) or (bool(self._buffer) and not self._buffer.isspace())


def _parse_block(block: bytes) -> SseEvent | None:
    """One block, LF-framed and ending in its blank line. The two shapes providers send —
    `data: …` alone (OpenAI) and `event: …` then `data: …` (Anthropic) — are cut straight out of
    the bytes; anything else goes through the full field parser, which gives the same answer for
    those two shapes (tests/dialects/test_sse.py checks it)."""
    last = len(block) - 2  # where the blank line starts
    line_end = block.find(b"\n")
    if line_end == last:
        if block.startswith(b"data: "):
            return SseEvent(block[6:last].decode("utf-8", "replace"), None, block)
    elif (
        block.startswith(b"event: ")
        and block.startswith(b"data: ", line_end + 1)
        and block.find(b"\n", line_end + 1) == last
    ):
        name = block[7:line_end].decode("utf-8", "replace")
        return SseEvent(block[line_end + 7 : last].decode("utf-8", "replace"), name or None, block)
    return _parse_fields(block)


def _parse_fields(block: bytes) -> SseEvent | None:
    """The WHATWG field parser, for any block."""
    text = block.decode("utf-8", errors="replace")
    event_name: str | None = None
    data_lines: list[str] = []
    for line in text.split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data_lines.append(value)
        elif field == "event":
            event_name = value or None
    if not data_lines:
        return None  # WHATWG: a block without data dispatches nothing
    return SseEvent(data="\n".join(data_lines), event=event_name, raw=block)
