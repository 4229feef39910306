"""OpenAI chat.completion → Anthropic Message, checked against the Anthropic SDK's own model."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message

from sidecar.dialects.openai_to_anthropic_response import openai_to_anthropic_response
from sidecar.errors import TranslationError
from tests.dialects.fixtures import load_json as fixture


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


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": "12", "completion_tokens": 3}, (0, 3, 0)),
        ({"prompt_tokens": 12, "prompt_tokens_details": 5, "completion_tokens": 3}, (12, 3, 0)),
        ({"prompt_tokens": 2**64 - 1, "prompt_tokens_details": {"cached_tokens": -1}}, (0, 0, 0)),
        ([12], (0, 0, 0)),
    ],
    ids=["a string", "details a number", "out of range", "no object"],
)
def test_unreadable_usage_counts_as_absent_and_the_answer_still_translates(
    usage: Any, tokens: tuple[int, int, int]
) -> None:
    out = openai_to_anthropic_response(openai_completion({"content": "x"}, usage=usage))
    counts = out["usage"]
    assert (counts["input_tokens"], counts["output_tokens"], counts["cache_read_input_tokens"]) == tokens


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
