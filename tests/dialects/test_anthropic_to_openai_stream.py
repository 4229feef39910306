"""Anthropic stream → OpenAI chunks, fed realistic upstream transcripts and checked with the SDKs'
own parsers: every frame is one complete SSE event the OpenAI SDK parses, and what it accumulates
equals the non-streaming translation of what the upstream sent.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from sidecar.dialects.anthropic_to_openai_response import anthropic_to_openai_response
from sidecar.dialects.anthropic_to_openai_stream import AnthropicToOpenAIStream
from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError
from tests.dialects.fixtures import load_sse as upstream
from tests.dialects.sdk_streams import (
    DONE,
    accumulate_anthropic,
    accumulate_openai,
    frames_to_payloads,
    openai_chunks,
    openai_payloads,
    run,
    single_event,
)
from tests.dialects.strategies import FAST, answers

CREATED = 1_764_000_000


def anthropic_to_openai(name: str, *, include_usage: bool = True) -> list[bytes]:
    return run(AnthropicToOpenAIStream(created=CREATED, include_usage=include_usage), upstream(name))


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


def anthropic_event(payload: dict[str, Any]) -> SseEvent:
    return SseEvent(data=orjson.dumps(payload).decode(), event=payload["type"])


def test_unreadable_usage_counts_and_stop_reasons_count_as_absent_and_readable_ones_stand() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=True)
    usage = {"input_tokens": 7, "cache_read_input_tokens": 2, "output_tokens": 1}
    unreadable = {"input_tokens": "7", "cache_read_input_tokens": 2**64 - 1, "output_tokens": [3]}
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": ["m"], "usage": usage}},
        {"type": "message_delta", "delta": {"stop_reason": ["end_turn"]}, "usage": unreadable},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
    ]
    for payload in events:
        translator.feed(anthropic_event(payload))

    payloads = openai_payloads(translator.finish())

    assert payloads[-1]["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 4,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    assert payloads[-1]["model"] == "", "a model that is no string is not one"


def test_an_unreadable_tool_use_start_changes_nothing() -> None:
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=False)
    translator.feed(upstream("anthropic_text.sse")[0])
    nameless = {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t"}}
    with pytest.raises(TranslationError):
        translator.feed(anthropic_event(nameless))

    named = {**nameless, "content_block": {**nameless["content_block"], "name": "f"}}
    (frame,) = translator.feed(anthropic_event(named))

    assert orjson.loads(single_event(frame).data)["choices"][0]["delta"]["tool_calls"][0]["index"] == 0


def test_an_error_nested_past_pythons_recursion_limit_gets_a_generic_type_and_message() -> None:
    deep = "[" * 1000 + "]" * 1000
    translator = AnthropicToOpenAIStream(created=CREATED, include_usage=False)

    (frame,) = translator.feed(
        SseEvent(data=f'{{"type":"error","error":{{"type":{deep},"message":{deep}}}}}')
    )

    assert orjson.loads(single_event(frame).data)["error"]["message"] == (
        "the upstream provider reported an error mid-stream"
    )


@FAST
@given(answers(), st.booleans())
def test_a_translated_anthropic_stream_accumulates_to_the_same_answer(
    answer: Any, include_usage: bool
) -> None:
    fragments, calls = answer
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 7, "output_tokens": 1},
            },
        }
    ]
    index = 0
    if fragments:
        events.append(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        )
        events.extend(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
            for t in fragments
        )
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    for offset, (call_id, name, pieces) in enumerate(calls):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append({"type": "content_block_start", "index": index + offset, "content_block": block})
        events.extend(
            {
                "type": "content_block_delta",
                "index": index + offset,
                "delta": {"type": "input_json_delta", "partial_json": p},
            }
            for p in pieces
        )
        events.append({"type": "content_block_stop", "index": index + offset})
    stop_reason = "tool_use" if calls else "end_turn"
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 9}}
    )
    events.append({"type": "message_stop"})

    translator = AnthropicToOpenAIStream(created=1, include_usage=include_usage)
    frames = [
        f for e in events for f in translator.feed(SseEvent(data=orjson.dumps(e).decode(), event=e["type"]))
    ]
    frames += translator.finish()
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for payload in frames_to_payloads(frames):
        state.handle_chunk(ChatCompletionChunk.model_validate(payload))
    final = state.get_final_completion()

    choice = final.choices[0]
    assert (choice.message.content or "") == "".join(fragments)
    assert [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in choice.message.tool_calls or ()
    ] == [  # type: ignore[union-attr]
        (call_id, name, orjson.loads("".join(pieces))) for call_id, name, pieces in calls
    ]
    assert choice.finish_reason == ("tool_calls" if calls else "stop")
    if include_usage:
        assert final.usage is not None
        assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (7, 9)
    else:
        assert final.usage is None
