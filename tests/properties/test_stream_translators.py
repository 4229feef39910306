"""The stream converters, as the relay feeds them: fed any well-framed events of its provider's
dialect — valid, damaged in one place, not JSON, wrongly named — a converter raises nothing but
`TranslationError` from `feed` and nothing from `finish`, and writes only complete SSE frames in an
order the client's SDK can follow.

That valid streams accumulate, in the official SDKs, to the same answer is checked in
tests/dialects/test_openai_to_anthropic_stream.py and test_anthropic_to_openai_stream.py."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.dialects.anthropic_to_openai_stream import AnthropicToOpenAIStream
from sidecar.dialects.exchange_plan import StreamConverter
from sidecar.dialects.openai_to_anthropic_stream import OpenAIToAnthropicStream
from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError
from tests.properties.strategies import anthropic_events, damaged_stream, openai_chunks
from tests.properties.support import or_refusal, single_event

PROPERTY = settings(max_examples=100, deadline=None)


def run_stream(
    converter: StreamConverter, stream: Sequence[tuple[str, str | None]]
) -> tuple[list[bytes], list[bytes]]:
    """Frames from `feed` (an event it cannot read raises TranslationError and is dropped, as the
    relay does) and from `finish`, which must not raise; `finish` again and `feed` after it add
    nothing."""
    frames: list[bytes] = []
    for data, name in stream:
        fed = or_refusal(partial(converter.feed, SseEvent(data, name)))
        frames += [] if isinstance(fed, TranslationError) else fed
    finished = converter.finish()
    assert converter.finish() == []
    assert converter.feed(SseEvent(stream[0][0], stream[0][1])) == []
    return frames, finished


def anthropic_event_kinds(frames: list[bytes]) -> list[tuple[str, int | None]]:
    """(type, block index) of each frame, which must be one complete event named by its type."""
    kinds = []
    for frame in frames:
        event = single_event(frame)
        payload = orjson.loads(event.data)
        assert event.event == payload["type"]
        kinds.append((payload["type"], payload.get("index")))
    return kinds


@PROPERTY
@given(damaged_stream(openai_chunks(), named=False))
def test_an_openai_stream_of_any_events_becomes_well_formed_anthropic_events(
    stream: list[tuple[str, str | None]],
) -> None:
    frames, finished = run_stream(OpenAIToAnthropicStream(requested_model="claude-haiku-4-5"), stream)

    kinds = anthropic_event_kinds(frames + finished)
    if ("error", None) in kinds:  # the relay passes nothing on after an error (routing/stream.py)
        kinds = kinds[: kinds.index(("error", None)) + 1]
    started: list[int] = []
    stopped: set[int] = set()
    for position, (kind, index) in enumerate(kinds):
        assert ("message_stop", None) not in kinds[:position], kinds  # nothing after the end
        # message_start first, before anything but an error: the SDK refuses events before it
        assert kind != "message_start" or position == 0, kinds
        assert kind in ("message_start", "error") or kinds[0] == ("message_start", None), kinds
        if kind == "content_block_start":
            assert index == len(started), kinds  # blocks are numbered 0, 1, 2… as they start
            assert set(started) == stopped, kinds  # one block open at a time
            started.append(index)
        elif kind in ("content_block_delta", "content_block_stop"):
            assert index in started, kinds
            if kind == "content_block_stop":
                assert index not in stopped, kinds
                stopped.add(index)
        elif kind == "message_delta":
            assert set(started) == stopped, kinds  # the message ends outside any block
    if finished:
        assert [kind for kind, _ in kinds[-2:]] == ["message_delta", "message_stop"], kinds


@pytest.mark.parametrize(
    "key",
    [{"index": 0}, {"id": "call_1"}, {}],
    ids=["keyed by index", "keyed by id", "the latest call"],
)
def test_no_delta_is_sent_for_a_block_already_stopped(key: dict[str, Any]) -> None:
    opening = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    if "index" not in key:
        del opening["index"]  # a server that sends no index keys its calls by id
    later = {**key, "function": {"arguments": "{}"}}
    deltas = [{"tool_calls": [opening]}, {"content": "thinking aloud"}, {"tool_calls": [later]}]
    stream = [
        (orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": delta}]}).decode(), None)
        for delta in deltas
    ]

    frames, _ = run_stream(OpenAIToAnthropicStream(requested_model="m"), stream)

    kinds = anthropic_event_kinds(frames)
    for position, (kind, index) in enumerate(kinds):
        if kind == "content_block_delta":
            assert ("content_block_stop", index) not in kinds[:position], kinds


@pytest.mark.parametrize("first", ['{"id":"c","choices":[1]}', '{"id":"c","choices":true}'])
def test_the_first_frame_is_message_start_even_when_the_first_chunk_is_unreadable(first: str) -> None:
    stream = [(first, None), ('{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}', None)]

    frames, finished = run_stream(OpenAIToAnthropicStream(requested_model="m"), stream)

    assert anthropic_event_kinds(frames + finished)[0] == ("message_start", None)


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": ["stop"]}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": [1]},
        {"choices": [], "usage": {"prompt_tokens": "12", "completion_tokens": 3}},
        {"choices": [], "usage": {"prompt_tokens": 1, "prompt_tokens_details": 5, "completion_tokens": 1}},
        {
            "choices": [],
            "usage": {"prompt_tokens": 2**64 - 1, "prompt_tokens_details": {"cached_tokens": -1}},
        },
    ],
    ids=["finish_reason a list", "usage a list", "a count a string", "details a number", "over 64 bits"],
)
def test_openai_to_anthropic_finish_never_raises(chunk: dict[str, Any]) -> None:
    converter = OpenAIToAnthropicStream(requested_model="m")
    converter.feed(SseEvent('{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}'))
    converter.feed(SseEvent(orjson.dumps({"id": "c", **chunk}).decode()))

    assert converter.finish()[-1] == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": "12"},
        {"cache_read_input_tokens": [3]},
        {"input_tokens": 2**64 - 1, "cache_read_input_tokens": 1},
    ],
    ids=["a string", "a list", "over 64 bits"],
)
def test_anthropic_to_openai_finish_never_raises(usage: dict[str, Any]) -> None:
    converter = AnthropicToOpenAIStream(created=1, include_usage=True)
    start: dict[str, Any] = {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "m", "usage": usage},
    }
    stop: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 1},
    }
    for payload in (start, stop):  # a stream cut after message_delta: the relay then calls finish()
        converter.feed(SseEvent(orjson.dumps(payload).decode(), payload["type"]))

    assert converter.finish()[-1] == b"data: [DONE]\n\n"


@PROPERTY
@given(damaged_stream(anthropic_events(), named=True), st.booleans())
def test_an_anthropic_stream_of_any_events_becomes_well_formed_openai_chunks(
    stream: list[tuple[str, str | None]], include_usage: bool
) -> None:
    converter = AnthropicToOpenAIStream(created=1_750_000_000, include_usage=include_usage)

    frames, finished = run_stream(converter, stream)

    assert finished[-1] == b"data: [DONE]\n\n"
    # Events after an error are still translated: the relay stops reading after one, not the converter.
    for frame in frames + finished[:-1]:
        event = single_event(frame)
        assert event.event is None
        payload = orjson.loads(event.data)
        if "error" in payload:
            assert set(payload["error"]) >= {"message", "type"}
            continue
        assert payload["object"] == "chat.completion.chunk"
        assert [choice["index"] for choice in payload["choices"]] in ([], [0])
        assert ("usage" in payload) is include_usage
