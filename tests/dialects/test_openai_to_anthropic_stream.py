"""OpenAI chunks → Anthropic stream events, fed realistic upstream transcripts and checked with the
SDKs' own parsers: every frame is one complete SSE event the Anthropic SDK parses, and what it
accumulates equals the non-streaming translation of what the upstream sent.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from sidecar.dialects.openai_to_anthropic_response import openai_to_anthropic_response
from sidecar.dialects.openai_to_anthropic_stream import OpenAIToAnthropicStream
from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError
from tests.dialects.fixtures import load_sse as upstream
from tests.dialects.sdk_streams import (
    ANTHROPIC_EVENT,
    accumulate_anthropic,
    accumulate_openai,
    anthropic_payloads,
    frames_to_payloads,
    run,
)
from tests.dialects.strategies import FAST, answers


def openai_to_anthropic(name: str, requested_model: str = "claude-sonnet-4-5") -> list[bytes]:
    return run(OpenAIToAnthropicStream(requested_model=requested_model), upstream(name))


def test_an_openai_text_stream_becomes_anthropic_events() -> None:
    assert anthropic_payloads(openai_to_anthropic("openai_text.sse")) == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_chatcmpl-BXkT1cXnKZ3hEwJ8gWbq9o2fQ7rS4",
                "type": "message",
                "role": "assistant",
                "model": "gpt-4o-2024-08-06",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": '! How can I "help" you today? \u00e9 \U0001f680'},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 19,
                "output_tokens": 10,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        },
        {"type": "message_stop"},
    ]


@pytest.mark.parametrize(
    "name", ["openai_text.sse", "openai_tool_calls.sse", "openai_text_then_tool_no_usage.sse"]
)
def test_the_translated_openai_stream_accumulates_to_the_translated_completion(name: str) -> None:
    streamed = accumulate_anthropic(anthropic_payloads(openai_to_anthropic(name)))
    chunks = [ChatCompletionChunk.model_validate_json(e.data) for e in upstream(name) if e.data != "[DONE]"]
    completion = accumulate_openai(chunks).model_dump(exclude_none=True)
    expected = Message.model_validate(openai_to_anthropic_response(completion))

    assert streamed.id == expected.id
    assert streamed.model == expected.model
    assert streamed.stop_reason == expected.stop_reason
    assert streamed.usage == expected.usage
    assert [block.model_dump() for block in streamed.content] == [
        block.model_dump() for block in expected.content
    ]


def test_parallel_tool_calls_become_consecutive_tool_use_blocks() -> None:
    message = accumulate_anthropic(anthropic_payloads(openai_to_anthropic("openai_tool_calls.sse")))
    assert [block.model_dump(include={"type", "id", "name", "input"}) for block in message.content] == [
        {
            "type": "tool_use",
            "id": "call_kV3hN2LqCQ8dDz1",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA"},
        },
        {"type": "tool_use", "id": "call_Xq7mP0aBf9Rt2", "name": "get_time", "input": {"tz": "Europe/Paris"}},
    ]
    assert message.stop_reason == "tool_use"
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (
        176,
        1024,
        41,
    )


def test_a_finish_reason_stop_with_tool_calls_is_tool_use_and_unsafe_ids_are_rewritten() -> None:
    message = accumulate_anthropic(
        anthropic_payloads(openai_to_anthropic("openai_text_then_tool_no_usage.sse"))
    )
    assert message.stop_reason == "tool_use"
    assert message.content[1].model_dump(include={"id", "input"}) == {
        "id": "call_abc_def_0",
        "input": {"q": "detour"},
    }
    assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)


def test_the_done_event_finishes_and_finish_is_idempotent() -> None:
    translator = OpenAIToAnthropicStream(requested_model="claude-sonnet-4-5")
    events = upstream("openai_text.sse")
    frames = [frame for event in events for frame in translator.feed(event)]
    assert frames[-1] == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert translator.completed
    assert translator.finish() == []
    assert translator.feed(events[1]) == []


def test_an_openai_in_band_error_becomes_an_anthropic_error_event_and_nothing_follows() -> None:
    translator = OpenAIToAnthropicStream(requested_model="claude-sonnet-4-5")
    translator.feed(upstream("openai_text.sse")[1])
    error = {"message": "Rate limit reached", "type": "tokens", "param": None, "code": "rate_limit_exceeded"}
    frames = translator.feed(SseEvent(data=orjson.dumps({"error": error}).decode()))
    assert frames == [
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"rate_limit_error","message":"Rate limit reached"}}\n\n'
    ]
    assert translator.finish() == []


def test_a_cut_openai_stream_is_closed_without_inventing_a_stop_reason() -> None:
    translator = OpenAIToAnthropicStream(requested_model="claude-sonnet-4-5")
    frames = run(translator, upstream("openai_tool_calls.sse")[:3])
    payloads = anthropic_payloads(frames)
    assert [p["type"] for p in payloads][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert payloads[-2]["delta"]["stop_reason"] is None
    assert not translator.completed


def test_an_empty_openai_stream_finishes_with_nothing() -> None:
    translator = OpenAIToAnthropicStream(requested_model="claude-sonnet-4-5")
    assert translator.feed(SseEvent(data="[DONE]")) == []
    assert translator.finish() == []


def test_the_requested_model_names_the_message_when_chunks_carry_none() -> None:
    frames = OpenAIToAnthropicStream(requested_model="local-llama").feed(
        SseEvent(data='{"id": "x1", "choices": [{"index": 0, "delta": {"content": "hi"}}]}')
    )
    assert anthropic_payloads(frames)[0]["message"]["model"] == "local-llama"


def test_tool_call_deltas_without_index_are_keyed_by_id() -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    calls = [
        {"id": "a", "function": {"name": "f", "arguments": '{"x":'}},
        {"function": {"arguments": "1}"}},
        {"id": "b", "function": {"name": "g", "arguments": "{}"}},
    ]
    events = [
        SseEvent(
            data=orjson.dumps(
                {"id": "c", "model": "m", "choices": [{"delta": {"tool_calls": [call]}}]}
            ).decode()
        )
        for call in calls
    ]
    events.append(SseEvent(data='{"id": "c", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]}'))
    message = accumulate_anthropic(anthropic_payloads(run(translator, events)))
    assert [block.model_dump(include={"id", "name", "input"}) for block in message.content] == [
        {"id": "a", "name": "f", "input": {"x": 1}},
        {"id": "b", "name": "g", "input": {}},
    ]


def test_a_refusal_delta_becomes_text_and_stop_reason_refusal() -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    events = [
        SseEvent(
            data='{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"refusal": "I can\'t."}}]}'
        ),
        SseEvent(
            data='{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}'
        ),
    ]
    message = accumulate_anthropic(anthropic_payloads(run(translator, events)))
    assert message.stop_reason == "refusal"
    assert message.content[0].model_dump(include={"type", "text"}) == {"type": "text", "text": "I can't."}


@pytest.mark.parametrize("data", ["{oops", "[]", '"text"', '{"choices": [1]}'])
def test_a_malformed_openai_chunk_raises_translation_error(data: str) -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    translator.feed(upstream("openai_text.sse")[0])
    with pytest.raises(TranslationError):
        translator.feed(SseEvent(data=data))


@FAST
@given(answers(), st.booleans())
def test_a_translated_openai_stream_accumulates_to_the_same_answer(answer: Any, send_usage: bool) -> None:
    fragments, calls = answer
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas.extend({"content": t} for t in fragments)
    for position, (call_id, name, pieces) in enumerate(calls):
        first = {
            "index": position,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        deltas.append({"tool_calls": [first]})
        deltas.extend({"tool_calls": [{"index": position, "function": {"arguments": p}}]} for p in pieces)
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}]}
    )
    if send_usage:
        chunks.append(
            {**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}
        )

    translator = OpenAIToAnthropicStream(requested_model="claude-haiku-4-5")
    frames = [f for c in chunks for f in translator.feed(SseEvent(data=orjson.dumps(c).decode()))]
    frames += translator.feed(SseEvent(data="[DONE]"))
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for payload in frames_to_payloads(frames):
        event = ANTHROPIC_EVENT.validate_python(payload)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None

    text = "".join(block.text for block in snapshot.content if block.type == "text")
    uses = [(b.id, b.name, b.input) for b in snapshot.content if b.type == "tool_use"]
    assert text == "".join(fragments)
    assert uses == [(call_id, name, orjson.loads("".join(pieces))) for call_id, name, pieces in calls]
    assert snapshot.stop_reason == ("tool_use" if calls else "end_turn")
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == ((7, 9) if send_usage else (0, 0))
