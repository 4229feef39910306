"""SSE framing properties over arbitrary bytes: however a stream is cut into reads, the decoder yields
the same events — the events a whole-stream reference gives (normalise the line ends, split at the
blank lines) — and holds the same unfinished tail. The pieces are biased towards what framing hinges
on: CR, LF, the delimiters `\\n\\n`, `\\r\\n\\r\\n` and `\\r\\r` cut anywhere, field names and the BOM."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.dialects.sse import SseDecoder, SseEvent, _parse_fields

BOM = b"\xef\xbb\xbf"

_PIECES = st.sampled_from(
    [
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\r\r",
        b"\r\n\r\n",
        b"data: ",
        b"data:",
        b"event: ",
        b"event: ping",
        b": keep-alive",
        b":",
        b"x",
        b"{}",
        b" ",
        b"\xc3\xa9",
        b"\xff",
        BOM,
    ]
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Bytes made of framing pieces, sometimes opened by a BOM, sometimes a valid stream's shape."""
    body = b"".join(draw(st.lists(_PIECES, max_size=40)))
    return (BOM if draw(st.booleans()) else b"") + body


def reference(stream: bytes) -> tuple[list[SseEvent], bytes]:
    """The events of a whole stream and its unfinished tail, computed at once (WHATWG framing)."""
    text = stream.removeprefix(BOM).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    *blocks, tail = text.split(b"\n\n")
    events = [_parse_fields(block + b"\n\n") for block in blocks]
    return [event for event in events if event is not None], tail


def feed_in(chunks: list[bytes]) -> tuple[list[SseEvent], SseDecoder]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events, decoder


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(stream) + 1) for cut in cuts), len(stream)]
    return [stream[start:end] for start, end in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=200)
@given(streams(), st.lists(st.integers(0, 1_000), max_size=12))
def test_any_chunking_of_any_bytes_yields_the_events_of_the_whole_stream(
    stream: bytes, cuts: list[int]
) -> None:
    expected, tail = reference(stream)

    events, decoder = feed_in(split_at(stream, cuts))

    assert events == expected
    assert decoder.pending == bool(tail.strip())
    flushed = decoder.flush()
    reference_flush = _parse_fields(tail.rstrip(b"\n") + b"\n\n") if tail.strip() else None
    assert flushed == ([] if reference_flush is None else [reference_flush])


@settings(max_examples=100, deadline=200)
@given(streams())
def test_one_byte_at_a_time_yields_the_events_of_the_whole_stream(stream: bytes) -> None:
    events, decoder = feed_in([stream[i : i + 1] for i in range(len(stream))])
    whole, whole_decoder = feed_in([stream])

    assert events == whole == reference(stream)[0]
    assert decoder.flush() == whole_decoder.flush()


@settings(max_examples=100, deadline=200)
@given(streams(), st.lists(st.integers(0, 1_000), max_size=12))
def test_empty_reads_between_chunks_change_nothing(stream: bytes, cuts: list[int]) -> None:
    chunks = split_at(stream, cuts)
    with_empties = [piece for chunk in chunks for piece in (chunk, b"")]

    assert feed_in(with_empties)[0] == feed_in(chunks)[0]
