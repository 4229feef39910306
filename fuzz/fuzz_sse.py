#!/usr/bin/env python3
"""Fuzz target: the SSE decoder (`sidecar.dialects.sse.SseDecoder`) on any bytes, cut into reads the
input itself chooses.

An upstream stream arrives in whatever pieces the network makes of it, so what the decoder returns
must depend on the bytes alone. For every input:

- fed whole, cut where the input says (read sizes 0 to 63, taken from its own bytes from the end
  backwards, so a mutation of the tail moves the cuts while the head stays a stream; 0 is an empty
  read) and, for short inputs, one byte at a time: the same events, the same `pending`, the same
  `flush`;
- those events are the ones a whole-stream reference gives (line ends normalised, split at the
  blank lines, each block through the field parser);
- each event's `raw` bytes, decoded again mid-stream, give that event's data and name (what a
  client of the same dialect reads when the bytes are forwarded unchanged).

Run: `python fuzz/fuzz_sse.py fuzz/corpus/sse -max_total_time=600` (fuzz/README.md).
"""

from __future__ import annotations

import sys

import atheris

# Only Detour's own modules are instrumented (see fuzz_requests.py).
with atheris.instrument_imports(include=["sidecar"]):
    from sidecar.dialects.sse import SseDecoder, SseEvent, _parse_fields

BOM = b"\xef\xbb\xbf"
BYTE_AT_A_TIME_UP_TO = 512  # longer inputs would spend most of the fuzzer's time in feed() calls


def input_chosen_chunks(data: bytes) -> list[bytes]:
    chunks: list[bytes] = []
    position = 0
    step = 0
    while position < len(data):
        size = data[-1 - step % len(data)] % 64
        step += 1
        if size == 0:
            chunks.append(b"")  # an empty read must change nothing
            size = 1
        chunks.append(data[position : position + size])
        position += size
    return chunks


def decode(chunks: list[bytes]) -> tuple[list[SseEvent], bool, list[SseEvent]]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    pending = decoder.pending
    return events, pending, decoder.flush()


def reference(data: bytes) -> list[SseEvent]:
    text = data.removeprefix(BOM).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    *blocks, _tail = text.split(b"\n\n")
    events = (_parse_fields(block + b"\n\n") for block in blocks)
    return [event for event in events if event is not None]


def mid_stream_decoder() -> SseDecoder:
    # Forwarded bytes are read mid-stream, where a BOM is no longer special (only the first bytes of
    # a stream may be one): an empty block first puts a fresh decoder in that state.
    decoder = SseDecoder()
    assert decoder.feed(b"\n\n") == []
    return decoder


def check(data: bytes) -> None:
    whole = decode([data])
    assert decode(input_chosen_chunks(data)) == whole
    if len(data) <= BYTE_AT_A_TIME_UP_TO:
        assert decode([data[i : i + 1] for i in range(len(data))]) == whole
    events, _, flushed = whole
    assert events == reference(data)
    for event in events + flushed:
        [again] = mid_stream_decoder().feed(event.raw)
        assert (again.data, again.event) == (event.data, event.event), (event, again)


def TestOneInput(data: bytes) -> None:
    check(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
