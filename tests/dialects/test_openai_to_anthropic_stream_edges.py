"""OpenAI chunks → Anthropic stream events, where the upstream is not as tidy as OpenAI's own: tool
calls whose fragments interleave with each other or with text, chunks that cannot be read, and
values that describe the answer (usage, finish_reason, an error's message) that are malformed. The
client must still get one block at a time, every tool input whole, and a stream its SDK accepts.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.dialects.openai_to_anthropic_stream import OpenAIToAnthropicStream
from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError
from tests.dialects.sdk_streams import accumulate_anthropic, anthropic_payloads, run

# --- tool calls that do not come one after another ---------------------------------------------------------


def openai_events(*deltas: dict[str, Any], finish_reason: str = "tool_calls") -> list[SseEvent]:
    chunks = [{"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta}]} for delta in deltas]
    chunks.append(
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]}
    )
    return [SseEvent(data=orjson.dumps(chunk).decode()) for chunk in chunks]


def assert_one_block_at_a_time(payloads: list[dict[str, Any]]) -> None:
    """Anthropic's contract: a block starts, takes deltas, stops; only then does the next start."""
    open_block = None
    for payload in payloads:
        if payload["type"] == "content_block_start":
            assert open_block is None, payloads
            open_block = payload["index"]
        elif payload["type"] == "content_block_delta":
            assert payload["index"] == open_block, payloads
        elif payload["type"] == "content_block_stop":
            assert payload["index"] == open_block, payloads
            open_block = None


def test_interleaved_tool_call_fragments_keep_one_block_open_and_every_input_whole() -> None:
    events = openai_events(
        {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"x":'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": '{"y":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]},
    )
    translator = OpenAIToAnthropicStream(requested_model="m")

    live = [frame for event in events[:3] for frame in translator.feed(event)]
    payloads = anthropic_payloads(live + [f for event in events[3:] for f in translator.feed(event)])
    payloads += anthropic_payloads(translator.finish())

    assert_one_block_at_a_time(payloads)
    assert [
        p["delta"]["partial_json"] for p in anthropic_payloads(live) if p["type"] == "content_block_delta"
    ] == [
        '{"x":',
        "1}",
    ], "the first call streams live"
    message = accumulate_anthropic(payloads)
    assert [block.model_dump(include={"id", "name", "input"}) for block in message.content] == [
        {"id": "call_a", "name": "f", "input": {"x": 1}},
        {"id": "call_b", "name": "g", "input": {"y": 2}},
    ]
    assert message.stop_reason == "tool_use"


def test_text_after_a_tool_call_has_begun_follows_its_block_and_the_call_stays_whole() -> None:
    events = openai_events(
        {"content": "Let me look. "},
        {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"q":'}}]},
        {"content": "Still thinking."},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]},
    )

    payloads = anthropic_payloads(run(OpenAIToAnthropicStream(requested_model="m"), events))

    assert_one_block_at_a_time(payloads)
    message = accumulate_anthropic(payloads)
    assert [block.model_dump(include={"type", "text", "input"}) for block in message.content] == [
        {"type": "text", "text": "Let me look. "},
        {"type": "tool_use", "input": {"q": "x"}},
        {"type": "text", "text": "Still thinking."},
    ]


def test_a_fragment_for_a_call_whose_block_closed_at_the_finish_is_dropped() -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    for event in openai_events(
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}]}
    ):
        translator.feed(event)

    late = {
        "id": "c",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]}}],
    }
    assert translator.feed(SseEvent(data=orjson.dumps(late).decode())) == []


# --- what cannot be read changes nothing -------------------------------------------------------------------


def test_an_unreadable_chunk_changes_nothing_and_the_next_is_translated_as_if_it_never_came() -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    translator.feed(SseEvent(data='{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}'))
    text_and_a_broken_call = {"content": "Hi", "tool_calls": [{"index": 0, "function": "not an object"}]}
    with pytest.raises(TranslationError):
        translator.feed(
            SseEvent(data=orjson.dumps({"choices": [{"index": 0, "delta": text_and_a_broken_call}]}).decode())
        )

    frames = translator.feed(SseEvent(data='{"choices":[{"index":0,"delta":{"content":"Hello"}}]}'))

    assert [p["type"] for p in anthropic_payloads(frames)] == ["content_block_start", "content_block_delta"]


@pytest.mark.parametrize(
    ("later", "usage"),
    [
        ({"prompt_tokens": "12", "completion_tokens": 3}, {"input_tokens": 0, "output_tokens": 3}),
        ({"prompt_tokens": 2**64 - 1, "completion_tokens": 1}, {"input_tokens": 0, "output_tokens": 1}),
        (
            {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": -1}},
            {"input_tokens": 9, "output_tokens": 0},
        ),
    ],
    ids=["a string", "past 2**53", "a negative count"],
)
def test_an_unreadable_usage_count_counts_as_absent(later: dict[str, Any], usage: dict[str, int]) -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    events = openai_events({"content": "Hi"}, finish_reason="stop")
    events.append(SseEvent(data=orjson.dumps({"id": "c", "choices": [], "usage": later}).decode()))

    payloads = anthropic_payloads(run(translator, events))

    assert payloads[-2]["usage"] == {**usage, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def test_an_unreadable_finish_reason_or_usage_is_ignored_and_the_readable_ones_stand() -> None:
    translator = OpenAIToAnthropicStream(requested_model="m")
    readable = {
        "choices": [{"index": 0, "delta": {"content": "Hi"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    unreadable = {"choices": [{"index": 0, "delta": {}, "finish_reason": ["stop"]}], "usage": [1]}
    for chunk in (readable, unreadable):
        translator.feed(SseEvent(data=orjson.dumps(chunk).decode()))

    message_delta = anthropic_payloads(translator.finish())[-2]

    assert message_delta["delta"]["stop_reason"] is None, "no readable finish_reason: none is invented"
    assert (message_delta["usage"]["input_tokens"], message_delta["usage"]["output_tokens"]) == (5, 2)
    assert not translator.completed


def test_an_error_whose_message_is_nested_past_pythons_recursion_limit_gets_a_generic_message() -> None:
    deep = "[" * 1000 + "]" * 1000
    translator = OpenAIToAnthropicStream(requested_model="m")
    translator.feed(SseEvent(data='{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}'))

    frames = translator.feed(SseEvent(data=f'{{"error":{{"message":{deep},"code":{deep},"type":{deep}}}}}'))

    assert anthropic_payloads(frames)[0]["error"] == {
        "type": "api_error",
        "message": "the upstream provider reported an error mid-stream",
    }
