"""Anthropic Message → OpenAI chat.completion, checked against the OpenAI SDK's own model."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from sidecar.dialects.anthropic_to_openai_response import anthropic_to_openai_response
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
        pytest.param(
            {"input_tokens": 2**64 - 1, "cache_read_input_tokens": "3", "output_tokens": 5},
            {"prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 5},
            id="unreadable_counts_are_absent",
        ),
        pytest.param([10], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, id="no_object"),
    ],
)
def test_anthropic_usage_becomes_openai_usage(usage: Any, expected: dict[str, Any]) -> None:
    out = anthropic_to_openai_response(anthropic_message([], usage=usage), created=CREATED)
    assert out["usage"] == expected


def test_an_anthropic_message_without_id_raises() -> None:
    with pytest.raises(TranslationError, match="malformed Anthropic response"):
        anthropic_to_openai_response({"content": [], "model": "m"}, created=CREATED)
