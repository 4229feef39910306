"""What an upstream SSE event means for failover (docs/architecture.md §3 "Streaming"), on real event
shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.sse import SseDecoder, SseEvent
from sidecar.dialects.stream_events import EventKind, StreamError, classify_event, stream_error


def openai_chunk(*choices: dict[str, Any], **extra: Any) -> SseEvent:
    payload = {
        "id": "chatcmpl-9x7",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_1",
        "choices": list(choices),
        **extra,
    }
    return SseEvent(orjson.dumps(payload).decode())


def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def anthropic(payload: dict[str, Any]) -> SseEvent:
    return SseEvent(orjson.dumps(payload).decode(), event=payload["type"])


USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
TOOL_CALL_START = {
    "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    ]
}
TOOL_CALL_ARGUMENTS = {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (openai_chunk(choice({"role": "assistant", "content": ""})), EventKind.PREAMBLE),
        (openai_chunk(choice({"role": "assistant", "content": None, "refusal": None})), EventKind.PREAMBLE),
        (openai_chunk(choice({})), EventKind.PREAMBLE),
        (openai_chunk(choice({"content": "Hello"})), EventKind.CONTENT),
        (openai_chunk(choice({"role": "assistant", "content": "Hi"})), EventKind.CONTENT),
        (openai_chunk(choice({"role": "assistant", **TOOL_CALL_START})), EventKind.CONTENT),
        (openai_chunk(choice(TOOL_CALL_ARGUMENTS)), EventKind.CONTENT),
        (openai_chunk(choice({"refusal": "I can't help with that."})), EventKind.CONTENT),
        (openai_chunk(choice({"function_call": {"name": "f", "arguments": ""}})), EventKind.CONTENT),
        (openai_chunk(choice({}, "stop")), EventKind.FINISH),
        (openai_chunk(choice({}, "tool_calls")), EventKind.FINISH),
        (openai_chunk(choice({}, "length")), EventKind.FINISH),
        (openai_chunk(choice({"content": "."}, "stop")), EventKind.FINISH),
        (openai_chunk(usage=USAGE), EventKind.PREAMBLE),
        (openai_chunk(prompt_filter_results=[{"prompt_index": 0}]), EventKind.PREAMBLE),
        (SseEvent("[DONE]"), EventKind.DONE),
        (
            SseEvent('{"error":{"message":"The server had an error","type":"server_error","code":null}}'),
            EventKind.ERROR,
        ),
        (SseEvent('{"error":"overloaded"}'), EventKind.ERROR),
        (SseEvent("not json"), EventKind.MALFORMED),
        (SseEvent(""), EventKind.MALFORMED),
        (SseEvent('{"choices":'), EventKind.MALFORMED),
        (SseEvent("[1, 2]"), EventKind.MALFORMED),
        (SseEvent('"a string"'), EventKind.MALFORMED),
        (SseEvent('{"id":"x"}'), EventKind.MALFORMED),
        (SseEvent('{"choices":null}'), EventKind.MALFORMED),
        (SseEvent('{"choices":["x"]}'), EventKind.MALFORMED),
    ],
    ids=[
        "role-only chunk",
        "role with null content and refusal",
        "empty delta",
        "content delta",
        "role and content together",
        "tool call start",
        "tool call arguments",
        "refusal delta",
        "legacy function_call",
        "finish stop",
        "finish tool_calls",
        "finish length",
        "content with finish_reason",
        "usage-only chunk with choices []",
        "azure prompt filter chunk",
        "[DONE]",
        "error object",
        "error string",
        "garbage",
        "empty data",
        "truncated json",
        "json array",
        "json string",
        "object without choices",
        "null choices",
        "choice that is not an object",
    ],
)
def test_an_openai_event_is_classified_by_what_it_carries(event: SseEvent, kind: EventKind) -> None:
    assert classify_event(Dialect.OPENAI, event) is kind


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (
            anthropic(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": "claude-sonnet-4-20250514",
                        "stop_reason": None,
                        "usage": {"input_tokens": 25, "output_tokens": 1},
                    },
                }
            ),
            EventKind.PREAMBLE,
        ),
        (anthropic({"type": "ping"}), EventKind.PREAMBLE),
        (SseEvent("", event="ping"), EventKind.PREAMBLE),
        (
            anthropic(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            ),
            EventKind.PREAMBLE,
        ),
        (
            anthropic(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}
            ),
            EventKind.CONTENT,
        ),
        (
            anthropic(
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {},
                    },
                }
            ),
            EventKind.CONTENT,
        ),
        (
            anthropic(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}
            ),
            EventKind.CONTENT,
        ),
        (
            anthropic(
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": '{"city": "Par'},
                }
            ),
            EventKind.CONTENT,
        ),
        (anthropic({"type": "content_block_stop", "index": 0}), EventKind.PREAMBLE),
        (
            anthropic(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 15},
                }
            ),
            EventKind.FINISH,
        ),
        (anthropic({"type": "message_stop"}), EventKind.DONE),
        (
            anthropic({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            EventKind.ERROR,
        ),
        (anthropic({"type": "a_future_event", "payload": 1}), EventKind.PREAMBLE),
        (SseEvent('{"index": 0}', event="content_block_delta"), EventKind.CONTENT),
        (SseEvent("not json", event="message_start"), EventKind.MALFORMED),
        (SseEvent("[1]", event="content_block_delta"), EventKind.MALFORMED),
    ],
    ids=[
        "message_start",
        "ping",
        "ping without data",
        "empty text content_block_start",
        "text content_block_start with text",
        "tool_use content_block_start",
        "text delta",
        "input_json delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
        "unknown event type",
        "type taken from the event name",
        "garbage data",
        "json array",
    ],
)
def test_an_anthropic_event_is_classified_by_its_type(event: SseEvent, kind: EventKind) -> None:
    assert classify_event(Dialect.ANTHROPIC, event) is kind


def test_a_real_anthropic_stream_has_a_preamble_then_content_then_finish_and_done() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","content":[]}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: ping\ndata: {"type": "ping"}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hello"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )

    kinds = [classify_event(Dialect.ANTHROPIC, event) for event in SseDecoder().feed(stream)]

    assert kinds == [
        EventKind.PREAMBLE,
        EventKind.PREAMBLE,
        EventKind.PREAMBLE,
        EventKind.CONTENT,
        EventKind.PREAMBLE,
        EventKind.FINISH,
        EventKind.DONE,
    ]


def test_a_real_openai_stream_with_usage_has_a_preamble_then_content_then_finish_and_done() -> None:
    events = [
        openai_chunk(choice({"role": "assistant", "content": ""})),
        openai_chunk(choice({"content": "Hi"})),
        openai_chunk(choice({}, "stop")),
        openai_chunk(usage=USAGE),
        SseEvent("[DONE]"),
    ]

    assert [classify_event(Dialect.OPENAI, event) for event in events] == [
        EventKind.PREAMBLE,
        EventKind.CONTENT,
        EventKind.FINISH,
        EventKind.PREAMBLE,
        EventKind.DONE,
    ]


# --- in-stream errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("invalid_request_error", 400),
        ("authentication_error", 401),
        ("permission_error", 403),
        ("not_found_error", 404),
        ("request_too_large", 413),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("overloaded_error", 529),
        ("some_new_error", 500),
    ],
)
def test_an_anthropic_stream_error_stands_for_the_status_of_its_type(error_type: str, status: int) -> None:
    event = anthropic({"type": "error", "error": {"type": error_type, "message": "details"}})

    assert stream_error(Dialect.ANTHROPIC, event) == StreamError(status, error_type, "details")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"},
            StreamError(429, "requests", "Rate limit reached for gpt-4o"),
        ),
        (
            {"message": "Too many tokens", "type": "tokens_rate_limit", "code": None},
            StreamError(429, "tokens_rate_limit", "Too many tokens"),
        ),
        (
            {"message": "The server had an error while processing your request.", "type": "server_error"},
            StreamError(500, "server_error", "The server had an error while processing your request."),
        ),
        (
            {"message": "boom", "type": None, "code": "internal_error"},
            StreamError(500, "internal_error", "boom"),
        ),
        ({}, StreamError(500, "api_error", "the provider reported an error in its stream")),
    ],
    ids=["rate limit code", "rate limit type", "server error", "code only", "empty error"],
)
def test_an_openai_stream_error_is_a_429_only_when_it_names_a_rate_limit(
    error: dict[str, Any], expected: StreamError
) -> None:
    assert stream_error(Dialect.OPENAI, SseEvent(orjson.dumps({"error": error}).decode())) == expected


@pytest.mark.parametrize("dialect", [Dialect.OPENAI, Dialect.ANTHROPIC])
@pytest.mark.parametrize("data", ['{"error": "overloaded"}', "not json", "[]", '{"type": "error"}'])
def test_an_error_event_without_an_error_object_becomes_a_generic_500(dialect: Dialect, data: str) -> None:
    assert stream_error(dialect, SseEvent(data, event="error")) == StreamError(
        500, "api_error", "the provider reported an error in its stream"
    )


@pytest.mark.parametrize("dialect", [Dialect.OPENAI, Dialect.ANTHROPIC])
def test_an_error_whose_fields_are_nested_past_pythons_recursion_limit_is_a_generic_500(
    dialect: Dialect,
) -> None:
    deep = "[" * 1000 + "]" * 1000
    data = f'{{"type":"error","error":{{"type":{deep},"code":{deep},"message":{deep}}}}}'

    assert stream_error(dialect, SseEvent(data, event="error")) == StreamError(
        500, "api_error", "the provider reported an error in its stream"
    )
