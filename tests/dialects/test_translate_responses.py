"""Non-streaming responses, checked against the official SDKs' own models."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from sidecar.dialects.translate_responses import anthropic_to_openai_response, openai_to_anthropic_response
from sidecar.errors import TranslationError
from tests.dialects.fixtures import load_json as fixture

CREATED = 1_764_000_000


def anthropic_message(content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
        **fields,
    }


def openai_completion(message: dict[str, Any], finish_reason: str = "stop", **fields: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "refusal": None, **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        **fields,
    }


# ---------------------------------------------------------------- Anthropic → OpenAI


def test_an_anthropic_tool_use_message_becomes_a_chat_completion() -> None:
    out = anthropic_to_openai_response(fixture("anthropic_message_tool_use.json"), created=CREATED)
    assert out == {
        "id": "chatcmpl-msg_01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": CREATED,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check the weather in San Francisco.",
                    "refusal": None,
                    "annotations": [],
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location":"San Francisco, CA","unit":"celsius","days":[1,2],'
                                '"detailed":true}',
                            },
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 3595,
            "completion_tokens": 503,
            "total_tokens": 4098,
            "prompt_tokens_details": {"cached_tokens": 1500},
        },
    }
    ChatCompletion.model_validate(out)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("a_reason_from_the_future", "stop"),
    ],
)
def test_stop_reason_maps_to_finish_reason(stop_reason: str | None, finish_reason: str) -> None:
    out = anthropic_to_openai_response(
        anthropic_message([{"type": "text", "text": "x"}], stop_reason=stop_reason), created=CREATED
    )
    assert out["choices"][0]["finish_reason"] == finish_reason
    ChatCompletion.model_validate(out)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}], None, id="only_tools_is_null"
        ),
        pytest.param([], "", id="nothing_is_empty_text"),
        pytest.param(
            [{"type": "redacted_thinking", "data": "x"}, {"type": "text", "text": "ok"}], "ok", id="thinking"
        ),
    ],
)
def test_message_content_is_null_only_when_there_are_only_tool_calls(
    content: list, expected: str | None
) -> None:
    out = anthropic_to_openai_response(anthropic_message(content), created=CREATED)
    assert out["choices"][0]["message"]["content"] == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            {"input_tokens": 10, "output_tokens": 5},
            {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            id="no_cache_fields",
        ),
        pytest.param(
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 30,
                "output_tokens": 5,
            },
            {
                "prompt_tokens": 60,
                "completion_tokens": 5,
                "total_tokens": 65,
                "prompt_tokens_details": {"cached_tokens": 30},
            },
            id="cached_tokens_are_part_of_prompt_tokens",
        ),
    ],
)
def test_anthropic_usage_becomes_openai_usage(usage: dict[str, int], expected: dict[str, Any]) -> None:
    out = anthropic_to_openai_response(anthropic_message([], usage=usage), created=CREATED)
    assert out["usage"] == expected


# ---------------------------------------------------------------- OpenAI → Anthropic


def test_an_openai_tool_calls_completion_becomes_an_anthropic_message() -> None:
    out = openai_to_anthropic_response(fixture("openai_completion_tool_calls.json"))
    assert out == {
        "id": "msg_chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-2024-08-06",
        "content": [
            {
                "type": "tool_use",
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "name": "get_weather",
                "input": {"location": "Paris, France"},
            },
            {"type": "tool_use", "id": "call_yPq2Nq9LnRZ6bjXwQ1s3", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 93,
            "output_tokens": 46,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1024,
        },
    }
    Message.model_validate(out)


@pytest.mark.parametrize(
    ("message", "finish_reason", "stop_reason"),
    [
        pytest.param({"content": "hi"}, "stop", "end_turn", id="stop"),
        pytest.param({"content": "hi"}, "length", "max_tokens", id="length"),
        pytest.param({"content": "hi"}, "content_filter", "refusal", id="content_filter"),
        pytest.param(
            {"content": None, "refusal": "I can't help with that."}, "stop", "refusal", id="refusal"
        ),
        pytest.param(
            {
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}],
            },
            "stop",
            "tool_use",
            id="named_tool_choice_answers_stop_with_tool_calls",
        ),
        pytest.param(
            {
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            "length",
            "max_tokens",
            id="tool_calls_cut_by_length",
        ),
        pytest.param({"content": "hi"}, None, "end_turn", id="missing"),
    ],
)
def test_finish_reason_maps_to_stop_reason(
    message: dict, finish_reason: str | None, stop_reason: str
) -> None:
    out = openai_to_anthropic_response(openai_completion(message, finish_reason))  # type: ignore[arg-type]
    assert out["stop_reason"] == stop_reason
    Message.model_validate(out)


def test_text_and_tool_calls_keep_their_order_and_unsafe_ids_are_rewritten() -> None:
    tool_call = {
        "id": "functions.search:0",
        "type": "function",
        "function": {"name": "search", "arguments": '{"q":1}'},
    }
    out = openai_to_anthropic_response(
        openai_completion({"content": "Looking.", "tool_calls": [tool_call]}, "tool_calls")
    )
    assert out["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "functions_search_0", "name": "search", "input": {"q": 1}},
    ]


def test_an_empty_answer_has_no_content_blocks() -> None:
    out = openai_to_anthropic_response(openai_completion({"content": ""}))
    assert out["content"] == []
    Message.model_validate(out)


def test_missing_usage_counts_zero_tokens() -> None:
    body = openai_completion({"content": "x"})
    del body["usage"]
    assert openai_to_anthropic_response(body)["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param({"id": "x", "model": "m", "choices": []}, "no choices", id="no_choices"),
        pytest.param(
            openai_completion(
                {
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":'}}
                    ]
                }
            ),
            "not valid JSON",
            id="truncated_arguments",
        ),
        pytest.param({"choices": [{"message": {"content": "x"}}]}, "malformed", id="no_id"),
    ],
)
def test_untranslatable_openai_responses_raise(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(TranslationError, match=reason):
        openai_to_anthropic_response(body)


def test_an_anthropic_message_without_id_raises() -> None:
    with pytest.raises(TranslationError, match="malformed Anthropic response"):
        anthropic_to_openai_response({"content": [], "model": "m"}, created=CREATED)
