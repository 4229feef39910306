"""SSE framing as a pure state machine: any chunking of a stream yields the same events."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.dialects.sse import SseDecoder, SseEvent, _parse_block, _parse_fields, encode_event

OPENAI_STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"lo \xc3\xa9t\xc3\xa9"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
OPENAI_DATA = [
    '{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
    '{"choices":[{"index":0,"delta":{"content":"Hel"}}]}',
    '{"choices":[{"index":0,"delta":{"content":"lo été"}}]}',
    '{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
    "[DONE]",
]

ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def decode_whole(stream: bytes) -> list[SseEvent]:
    decoder = SseDecoder()
    return decoder.feed(stream) + decoder.flush()


def decode_chunks(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[start:end] for start, end in itertools.pairwise(bounds)]


def with_line_ending(stream: bytes, ending: bytes) -> bytes:
    return stream.replace(b"\n", ending)


# --- framing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_a_realistic_openai_stream_decodes_to_its_data_lines_with_any_line_ending(ending: bytes) -> None:
    events = decode_whole(with_line_ending(OPENAI_STREAM, ending))

    assert [event.data for event in events] == OPENAI_DATA
    assert all(event.event is None for event in events)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_an_openai_stream_split_at_every_byte_position_yields_the_same_events(ending: bytes) -> None:
    stream = with_line_ending(OPENAI_STREAM, ending)
    whole = decode_whole(stream)

    for position in range(len(stream) + 1):
        assert decode_chunks([stream[:position], stream[position:]]) == whole, position


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_a_stream_fed_one_byte_at_a_time_yields_the_same_events(ending: bytes) -> None:
    stream = with_line_ending(ANTHROPIC_STREAM, ending)

    one_by_one = decode_chunks([stream[i : i + 1] for i in range(len(stream))])

    assert one_by_one == decode_whole(stream)
    assert [event.event for event in one_by_one] == [
        "message_start",
        "ping",
        "content_block_delta",
        "message_stop",
    ]


def test_many_events_in_one_chunk_are_all_returned_in_order() -> None:
    assert [event.event for event in SseDecoder().feed(ANTHROPIC_STREAM)] == [
        "message_start",
        "ping",
        "content_block_delta",
        "message_stop",
    ]


def test_the_raw_bytes_of_the_events_rebuild_the_stream_byte_for_byte() -> None:
    events = SseDecoder().feed(ANTHROPIC_STREAM)

    assert b"".join(event.raw for event in events) == ANTHROPIC_STREAM
    assert b"".join(event.encode() for event in events) == ANTHROPIC_STREAM


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"data: a\n\n", [SseEvent("a", None, b"data: a\n\n")]),
        (b"data:a\n\n", [SseEvent("a", None, b"data:a\n\n")]),
        (b"data:  two spaces\n\n", [SseEvent(" two spaces", None, b"data:  two spaces\n\n")]),
        (b"data\n\n", [SseEvent("", None, b"data\n\n")]),
        (b"data: \n\n", [SseEvent("", None, b"data: \n\n")]),
        (b"data: a\ndata: b\ndata: c\n\n", [SseEvent("a\nb\nc", None, b"data: a\ndata: b\ndata: c\n\n")]),
        # Line ends are normalised to LF, so `raw` carries LF framing whatever the provider used.
        (b"data: a\r\ndata: b\r\n\r\n", [SseEvent("a\nb", None, b"data: a\ndata: b\n\n")]),
        (b"data: a\rdata: b\r\r", [SseEvent("a\nb", None, b"data: a\ndata: b\n\n")]),
        (b"event: ping\ndata: {}\n\n", [SseEvent("{}", "ping", b"event: ping\ndata: {}\n\n")]),
        (b"data: {}\nevent: ping\n\n", [SseEvent("{}", "ping", b"data: {}\nevent: ping\n\n")]),
        (b"event:\ndata: x\n\n", [SseEvent("x", None, b"event:\ndata: x\n\n")]),
        (b"data: a: b\n\n", [SseEvent("a: b", None, b"data: a: b\n\n")]),
    ],
    ids=[
        "single data line",
        "no space after the colon",
        "only one leading space is stripped",
        "field name without colon",
        "empty data value",
        "multi-line data joins with LF",
        "multi-line data with CRLF",
        "multi-line data with CR",
        "named event",
        "event field after data",
        "empty event name means message",
        "colon inside the value",
    ],
)
def test_one_block_decodes_to_the_expected_event(stream: bytes, expected: list[SseEvent]) -> None:
    assert SseDecoder().feed(stream) == expected


@pytest.mark.parametrize(
    "stream",
    [
        b": keep-alive\n\n",
        b":\n\n",
        b": OPENROUTER PROCESSING\r\n\r\n",
        b"id: 7\n\n",
        b"retry: 1000\n\n",
        b"\n\n",
        b"\r\n\r\n",
        b"unknown-field: value\n\n",
    ],
)
def test_blocks_without_data_or_event_dispatch_nothing(stream: bytes) -> None:
    decoder = SseDecoder()

    assert decoder.feed(stream) == []
    assert decoder.flush() == []


def test_comment_lines_inside_an_event_are_ignored() -> None:
    [event] = SseDecoder().feed(b": before\ndata: a\n: between\ndata: b\n\n")

    assert event.data == "a\nb"


def test_a_multibyte_character_split_across_chunks_is_decoded_whole() -> None:
    stream = "data: héllo ✓\n\n".encode()
    cut = stream.index(b"\xe2") + 1  # inside the three bytes of the check mark

    assert decode_chunks([stream[:cut], stream[cut:]]) == [SseEvent("héllo ✓", None, stream)]


def test_invalid_utf8_is_replaced_instead_of_raising() -> None:
    [event] = SseDecoder().feed(b"data: \xff\xfe\n\n")

    assert event.data == "\ufffd\ufffd"


# --- an incomplete tail ----------------------------------------------------------------------------


def test_an_incomplete_event_is_held_back_until_its_blank_line_arrives() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"data: hel") == []
    assert decoder.pending
    assert decoder.feed(b"lo\n") == []
    assert decoder.feed(b"\n") == [SseEvent("hello", None, b"data: hello\n\n")]
    assert not decoder.pending


@pytest.mark.parametrize(
    ("tail", "data", "event"),
    [
        (b"data: last", "last", None),
        (b"data: last\n", "last", None),
        (b"data: last\r\n", "last", None),
        (b"data: last\r", "last", None),
        (b"data: a\ndata: b\n", "a\nb", None),
        (b"event: message_stop\ndata: {}", "{}", "message_stop"),
    ],
)
def test_flush_returns_an_event_whose_final_blank_line_never_came(
    tail: bytes, data: str, event: str | None
) -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: first\n\n" + tail) == [SseEvent("first", None, b"data: first\n\n")]

    [flushed] = decoder.flush()

    assert (flushed.data, flushed.event) == (data, event)
    assert decoder.flush() == []
    assert not decoder.pending


@pytest.mark.parametrize("tail", [b"", b"\n", b"  \r\n", b": comment only"])
def test_flush_of_a_blank_or_comment_tail_returns_nothing(tail: bytes) -> None:
    decoder = SseDecoder()
    decoder.feed(tail)

    assert decoder.flush() == []


def test_a_flushed_event_encodes_as_a_complete_frame() -> None:
    decoder = SseDecoder()
    decoder.feed(b"data: [DONE]")
    [event] = decoder.flush()

    assert SseDecoder().feed(event.encode()) == [SseEvent("[DONE]", None, event.encode())]


def test_a_whitespace_only_buffer_is_not_pending() -> None:
    decoder = SseDecoder()
    decoder.feed(b"data: a\n\n\n")

    assert not decoder.pending


# --- properties ----------------------------------------------------------------------------------

_LINE_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12)
_EVENT_NAME = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=10)
_ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str | None]]]:
    """A valid stream with one line ending, keep-alive comments and optional event names."""
    ending = draw(_ENDINGS)
    text = ""
    expected: list[tuple[str, str | None]] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            text += f": {draw(_LINE_TEXT)}{ending}"
            if draw(st.booleans()):
                text += ending  # a keep-alive block of its own
        name = draw(st.none() | _EVENT_NAME)
        lines = draw(st.lists(_LINE_TEXT, min_size=1, max_size=3))
        if name is not None:
            text += f"event: {name}{ending}"
        text += "".join(f"data: {line}{ending}" for line in lines)
        text += ending
        expected.append(("\n".join(lines), name))
    return text.encode(), expected


@given(sse_streams(), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_of_a_valid_stream_yields_the_same_events_as_feeding_it_whole(
    stream_and_expected: tuple[bytes, list[tuple[str, str | None]]], raw_cuts: list[int]
) -> None:
    stream, expected = stream_and_expected
    cuts = [cut % (len(stream) + 1) for cut in raw_cuts]

    whole = decode_whole(stream)
    split = decode_chunks(split_at(stream, cuts))

    assert split == whole
    assert [(event.data, event.event) for event in whole] == expected


@given(
    st.lists(_LINE_TEXT, min_size=1, max_size=4).map("\n".join),
    st.none() | _EVENT_NAME,
)
def test_encode_event_round_trips_through_the_decoder(data: str, event: str | None) -> None:
    encoded = encode_event(data, event)

    assert SseDecoder().feed(encoded) == [SseEvent(data, event, encoded)]


def test_encode_event_writes_the_event_line_before_one_data_line_per_line() -> None:
    assert encode_event('{"a":1}', "message_start") == b'event: message_start\ndata: {"a":1}\n\n'
    assert encode_event("a\nb") == b"data: a\ndata: b\n\n"


def test_an_event_without_raw_bytes_encodes_from_its_fields() -> None:
    assert SseEvent("x", "ping").encode() == b"event: ping\ndata: x\n\n"


def test_encode_event_keeps_text_after_a_lone_carriage_return_in_the_data() -> None:
    # "a\r\nb" survives (as "a\nb"): only a lone CR loses the rest of the line.
    assert [event.data for event in SseDecoder().feed(encode_event("a\rb"))] == ["a\nb"]


@pytest.mark.parametrize(
    "stream",
    [b"data: a\n\r\ndata: b\n\n", b"data: a\r\n\rdata: b\r\r", b"data: a\n\rdata: b\n\n"],
    ids=["LF then CRLF", "CRLF then CR", "LF then CR"],
)
def test_a_blank_line_with_a_different_line_ending_still_ends_the_event(stream: bytes) -> None:
    assert [event.data for event in decode_whole(stream)] == ["a", "b"]


# --- the fast path for the common blocks agrees with the full field parser -------------------------

_FIELD_PIECES = [b"data", b"event", b"data: ", b"event: ", b":", b" ", b"\n", b"x", b"{}"]
_FIELD_BYTES = st.sampled_from([*_FIELD_PIECES, b"\xc3", b"\xa9", b"\xff", b"\xe2\x9c"])


@st.composite
def normalised_blocks(draw: st.DrawFn) -> bytes:
    """A block as `feed` hands it over (no CR, ending in a blank line), often one of the two common
    shapes, sometimes a near miss, sometimes noise."""
    value = draw(st.binary(max_size=12).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")))
    name = draw(st.binary(max_size=6).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")))
    shape = draw(st.integers(0, 3))
    if shape == 0:
        body = b"data: " + value
    elif shape == 1:
        body = b"event: " + name + b"\ndata: " + value
    else:
        body = b"".join(draw(st.lists(_FIELD_BYTES, max_size=10))).replace(b"\n\n", b"\n")
        body = body.removesuffix(b"\n")
        if shape == 3:
            body = draw(st.sampled_from([b"data: ", b"event: ", b"data:", b""])) + body
    return body + b"\n\n"


@given(normalised_blocks())
def test_the_fast_path_for_common_blocks_agrees_with_the_full_parser(block: bytes) -> None:
    assert _parse_block(block) == _parse_fields(block)


@pytest.mark.parametrize(
    "block",
    [
        b"data: x\n\n",
        b"data: \n\n",
        b"data: \xe2\x9c\n\n",
        b"event: ping\ndata: {}\n\n",
        b"event: \ndata: {}\n\n",
        b"event:  two\ndata: a: b\n\n",
        b"event: a\ndata: b\ndata: c\n\n",
        b"data: a\nevent: b\n\n",
        b"data:x\n\n",
        b"event: x\n\n",
        b": comment\n\n",
    ],
)
def test_common_blocks_and_near_misses_parse_as_the_full_parser_does(block: bytes) -> None:
    assert _parse_block(block) == _parse_fields(block)


def test_events_compare_and_hash_by_their_fields() -> None:
    assert SseEvent("a", "b", b"c") == SseEvent(data="a", event="b", raw=b"c")
    assert SseEvent("a") != SseEvent("a", "b")
    assert SseEvent("a") != ("a", None, b"")
    assert hash(SseEvent("a", "b", b"c")) == hash(SseEvent("a", "b", b"c"))
    assert repr(SseEvent("a")) == "SseEvent(data='a', event=None, raw=b'')"


def test_an_event_that_never_ends_cannot_grow_the_buffer_without_bound() -> None:
    import pytest

    from sidecar.dialects.sse import MAX_PENDING_BYTES
    from sidecar.errors import SseFramingError

    decoder = SseDecoder()
    decoder.feed(b"data: " + b"x" * (MAX_PENDING_BYTES // 2))
    with pytest.raises(SseFramingError):
        decoder.feed(b"x" * (MAX_PENDING_BYTES // 2 + 10))


@pytest.mark.parametrize(
    ("chunk", "lines"),
    [(b"x" * 4096, 1), (b"x" * 4088 + b"\r\ndata: ", 2049)],
    ids=["one long line", "CRLF data lines"],
)
def test_feeding_a_large_unfinished_event_in_small_chunks_takes_time_linear_in_its_size(
    chunk: bytes, lines: int
) -> None:
    # Issue 13: every chunk rescanned (and recopied) the whole buffer, so an 8 MiB event in 4 KiB
    # chunks took about 9 s, with the event loop blocked. Linear, it takes a few milliseconds.
    decoder = SseDecoder()
    started = time.perf_counter()

    assert decoder.feed(b"data: ") == []
    for _ in range(8 * 1024 * 1024 // len(chunk)):
        assert decoder.feed(chunk) == []
    [event] = decoder.feed(b"\r\n\r\n")

    assert time.perf_counter() - started < 1.0
    assert event.data.count("\n") + 1 == lines
    assert len(event.data) == 8 * 1024 * 1024 - 7 * (lines - 1)  # "\r\ndata: " became "\n"


def test_one_read_past_the_cap_is_refused_even_after_an_event_it_completes() -> None:
    from sidecar.dialects.sse import MAX_PENDING_BYTES
    from sidecar.errors import SseFramingError

    decoder = SseDecoder()
    decoder.feed(b"data: a")
    with pytest.raises(SseFramingError):
        decoder.feed(b"\n\ndata: " + b"x" * MAX_PENDING_BYTES)
