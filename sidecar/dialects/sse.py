"""Server-sent events framing, as a pure state machine: bytes in, events out.

Upstream streams arrive in arbitrary chunks (an event may be split across reads, or many events may
share one). `SseDecoder.feed` buffers the partial tail and returns the complete events, each with
its raw bytes so a same-dialect stream can be forwarded byte for byte. No I/O, no JSON: the dialect
modules decide what an event means.
"""

from __future__ import annotations

from dataclasses import dataclass

_BLANK_LINE = (b"\n\n", b"\r\n\r\n", b"\r\r")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event. `event` is None when the stream did not name it (the spec's "message")."""

    data: str
    event: str | None = None
    raw: bytes = b""

    def encode(self) -> bytes:
        """Bytes of this event, reusing the upstream's framing when we have it."""
        return self.raw or encode_event(self.data, self.event)


def encode_event(data: str, event: str | None = None) -> bytes:
    lines = [f"event: {event}\n"] if event else []
    lines.extend(f"data: {line}\n" for line in data.split("\n"))
    lines.append("\n")
    return "".join(lines).encode()


class SseDecoder:
    """Incremental SSE parser (WHATWG framing: CR, LF or CRLF line ends; `:` comments ignored)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SseEvent] = []
        start = 0
        while True:
            end, separator_length = _find_blank_line(buffer, start)
            if end < 0:
                break
            block = buffer[start : end + separator_length]
            start = end + separator_length
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SseEvent]:
        """Events left when the stream ended without the final blank line."""
        tail, self._buffer = self._buffer, b""
        if not tail.strip():
            return []
        event = _parse_block(tail + b"\n\n")
        return [event] if event is not None else []

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())


def _find_blank_line(buffer: bytes, start: int) -> tuple[int, int]:
    best, best_length = -1, 0
    for separator in _BLANK_LINE:
        index = buffer.find(separator, start)
        if index >= 0 and (best < 0 or index < best):
            best, best_length = index, len(separator)
    return best, best_length


def _parse_block(block: bytes) -> SseEvent | None:
    text = block.decode("utf-8", errors="replace")
    event_name: str | None = None
    data_lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data_lines.append(value)
        elif field == "event":
            event_name = value or None
    if not data_lines and event_name is None:
        return None
    return SseEvent(data="\n".join(data_lines), event=event_name, raw=block)
