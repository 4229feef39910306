"""Stream state machines, fed realistic upstream transcripts and checked with the SDKs' own parsers.

Every emitted frame must be one complete SSE event the official SDK parses; what the SDK accumulates
from the translated stream must equal the non-streaming translation of what the upstream sent.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from sidecar.dialects.sse import SseDecoder, SseEvent
from sidecar.dialects.translate_responses import anthropic_to_openai_response, openai_to_anthropic_response
from sidecar.dialects.translate_streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from sidecar.errors import TranslationError
from tests.dialects.fixtures import load_sse as upstream

CREATED = 1_764_000_000
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
DONE = b"data: [DONE]\n\n"


def run(translator: AnthropicToOpenAIStream | OpenAIToAnthropicStream, events: list[SseEvent]) -> list[bytes]:
    frames = [frame for event in events for frame in translator.feed(event)]
    return frames + translator.finish()


def single_event(frame: bytes) -> SseEvent:
    """The one SSE event a frame holds; fails if it holds more, fewer, or an unfinished one."""
    decoder = SseDecoder()
    events = decoder.feed(frame)
    assert len(events) == 1, frame
    assert not decoder.pending, frame
    return events[0]


def openai_payloads(frames: list[bytes]) -> list[dict[str, Any]]:
    """Chunks (and error objects) the OpenAI SDK would see; asserts framing and [DONE] last."""
    assert frames[-1] == DONE
    payloads = []
    for frame in frames[:-1]:
        event = single_event(frame)
        assert event.event is None
        assert frame.startswith(b"data: {")
        payloads.append(orjson.loads(event.data))
    return payloads


def openai_chunks(frames: list[bytes]) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate(payload) for payload in openai_payloads(frames)]


def anthropic_payloads(frames: list[bytes]) -> list[dict[str, Any]]:
    payloads = []
    for frame in frames:
        event = single_event(frame)
        payload = orjson.loads(event.data)
        assert event.event == payload["type"]
        if payload["type"] != "error":
            ANTHROPIC_EVENT.validate_python(payload)
        payloads.append(payload)
    return payloads


def accumulate_anthropic(payloads: list[dict[str, Any]]) -> Message:
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for payload in payloads:
        if payload["type"] in ("ping", "error"):
            continue
        event = ANTHROPIC_EVENT.validate_python(payload)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def accumulate_openai(chunks: list[ChatCompletionChunk]) -> ChatCompletion:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return ChatCompletion.model_validate(state.get_final_completion().model_dump())


def anthropic_to_openai(name: str, *, include_usage: bool = True) -> list[bytes]:
    return run(AnthropicToOpenAIStream(created=CREATED, include_usage=include_usage), upstream(name))


def openai_to_anthropic(name: str, requested_model: str = "claude-sonnet-4-5") -> list[bytes]:
    return run(OpenAIToAnthropicStream(requested_model=requested_model), upstream(name))


# ---------------------------------------------------------------- Anthropic → OpenAI


def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    )
    return {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "claude-sonnet-4-5-20250929",
        "choices": choices,
        **fields,
    }


def test_an_anthropic_text_stream_becomes_openai_chunks_with_usage_last() -> None:
    assert openai_payloads(anthropic_to_openai("anthropic_text.sse")) == [
        chunk({"role": "assistant", "content": "", "refusal": None}, usage=None),
        chunk({"content": "Hello"}, usage=None),
        chunk({"content": '! How can I "help"'}, usage=None),
        chunk({"content": " you today? \u00e9\u00e8 \U0001f680"}, usage=None),
        chunk({}, "stop", usage=None),
        chunk(
            None,
            usage={
                "prompt_tokens": 25,
                "completion_tokens": 15,
                "total_tokens": 40,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        ),
    ]


def test_without_include_usage_there_is_no_usage_chunk_and_no_usage_field() -> None:
    payloads = openai_payloads(anthropic_to_openai("anthropic_text.sse", include_usage=False))
    assert all("usage" not in payload for payload in payloads)
    assert all(payload["choices"] for payload in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("name", ["anthropic_text.sse", "anthropic_tool_use.sse"])
def test_the_translated_stream_accumulates_to_the_translated_message(name: str) -> None:
    streamed = accumulate_openai(openai_chunks(anthropic_to_openai(name)))
    message = accumulate_anthropic([orjson.loads(event.data) for event in upstream(name)])
    expected = ChatCompletion.model_validate(
        anthropic_to_openai_response(message.model_dump(), created=CREATED)
    )

    assert streamed.id == expected.id
    assert streamed.model == expected.model
    assert streamed.usage == expected.usage
    got, want = streamed.choices[0], expected.choices[0]
    assert got.finish_reason == want.finish_reason
    assert got.message.content == want.message.content
    assert [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in got.message.tool_calls or ()
    ] == [  # type: ignore[union-attr]
        (c.id, c.function.name, orjson.loads(c.function.arguments))  # type: ignore[union-attr]
        for c in want.message.tool_calls or ()
    ]


def test_tool_use_blocks_become_indexed_tool_call_deltas_and_thinking_is_dropped() -> None:
    deltas = [
        p["choices"][0]["delta"]
        for p in openai_payloads(anthropic_to_openai("anthropic_tool_use.sse"))
        if p["choices"]
    ]
    assert deltas == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Okay, let's check the weather for San Francisco and Paris:"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]},
        {
            "tool_calls": [
                {"index": 0, "function": {"arguments": ' "San Francisco, CA", "unit": "fahrenheit"}'}}
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_01QKpFkSeMEn8Kk1Mgg2Rzr5",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"location": "Paris"}'}}]},
        {},
    ]


def test_an_anthropic_error_event_becomes_an_in_band_openai_error_and_the_stream_ends() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=True)
    frames = [frame for event in upstream("anthropic_overloaded.sse") for frame in translator.feed(event)]
    assert orjson.loads(single_event(frames[-1]).data) == {
        "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}
    }
    assert not translator.completed
    assert translator.finish() == [DONE]


def test_a_stream_cut_before_message_delta_gets_no_finish_reason() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=True)
    frames = run(translator, upstream("anthropic_text.sse")[:5])
    assert not translator.completed
    assert all(chunk.choices and chunk.choices[0].finish_reason is None for chunk in openai_chunks(frames))


def test_anthropic_finish_is_idempotent_and_later_events_are_ignored() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=True)
    events = upstream("anthropic_text.sse")
    run(translator, events)
    assert translator.completed
    assert translator.finish() == []
    assert translator.feed(events[3]) == []


def test_a_malformed_anthropic_event_raises_and_the_stream_carries_on() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=False)
    events = upstream("anthropic_text.sse")
    translator.feed(events[0])
    for bad in ("{not json", "[1]", '{"type": "content_block_delta", "index": 0}'):
        with pytest.raises(TranslationError):
            translator.feed(SseEvent(data=bad, event="content_block_delta"))
    frames = run(translator, events[1:])
    assert "".join(c.choices[0].delta.content or "" for c in openai_chunks(frames)) == (
        'Hello! How can I "help" you today? \u00e9\u00e8 \U0001f680'
    )


def test_unknown_anthropic_events_and_deltas_are_ignored() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=False)
    translator.feed(upstream("anthropic_text.sse")[0])
    assert (
        translator.feed(
            SseEvent(data='{"type": "content_block_delta", "index": 0, "delta": {"type": "new_delta"}}')
        )
        == []
    )
    assert translator.feed(SseEvent(data='{"type": "brand_new_event"}', event="brand_new_event")) == []


# ---------------------------------------------------------------- OpenAI → Anthropic


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
