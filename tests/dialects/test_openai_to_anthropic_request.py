"""OpenAI request → Anthropic request, table by table: each row is one documented rule of
`sidecar.dialects.openai_to_anthropic_request`."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.dialects.openai_to_anthropic_request import (
    openai_to_anthropic_request,
    unsupported_openai_features,
)
from sidecar.errors import TranslationError
from tests.dialects.fixtures import (
    ANTHROPIC_WEATHER_TOOL,
    HI,
    OPENAI_WEATHER_TOOL,
    PNG,
    anthropic_request,
    call,
)


def to_anthropic(body: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    options = {"upstream_model": "claude-sonnet-4-5", "default_max_tokens": 4096, **overrides}
    return openai_to_anthropic_request({"model": "gpt-4o", **body}, **options)


OPENAI_TO_ANTHROPIC = [
    pytest.param(
        {"messages": [{"role": "system", "content": "Be brief."}, *HI]},
        anthropic_request(HI, system="Be brief."),
        id="a_single_system_message_becomes_the_system_string",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                *HI,
            ]
        },
        anthropic_request(
            HI, system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
        ),
        id="system_and_developer_messages_become_one_text_block_each",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": "Hi", "name": "ann"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [{"type": "text", "text": "Tell me a joke"}]},
            ]
        },
        anthropic_request(
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Tell me a joke"},
            ]
        ),
        id="multi_turn_text_keeps_roles_and_drops_names",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "First"}, {"role": "user", "content": "Second"}]},
        anthropic_request(
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "First"}, {"type": "text", "text": "Second"}],
                }
            ]
        ),
        id="consecutive_user_messages_are_merged_for_alternation",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/a.jpg", "detail": "high"},
                        },
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ]
        },
        anthropic_request(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                }
            ]
        ),
        id="image_urls_become_url_or_base64_image_blocks",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        call("call_1", "get_weather", '{"location": "Paris"}'),
                        call("call_2", "get_weather", '{"location": "Rome", "unit": "c"}'),
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"role": "user", "content": "Thanks, and tomorrow?"},
            ]
        },
        anthropic_request(
            [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call_1",
                            "name": "get_weather",
                            "input": {"location": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "call_2",
                            "name": "get_weather",
                            "input": {"location": "Rome", "unit": "c"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_2",
                            "content": [{"type": "text", "text": "21C"}],
                        },
                        {"type": "text", "text": "Thanks, and tomorrow?"},
                    ],
                },
            ]
        ),
        id="tool_calls_become_tool_use_and_tool_messages_one_user_turn",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": "Searching.",
                    "tool_calls": [call("call_abc.def:0", "search", "")],
                },
                {"role": "tool", "tool_call_id": "call_abc.def:0", "content": ""},
            ]
        },
        anthropic_request(
            [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Searching."},
                        {"type": "tool_use", "id": "call_abc_def_0", "name": "search", "input": {}},
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc_def_0"}]},
            ]
        ),
        id="tool_call_ids_are_made_anthropic_safe_on_both_sides",
    ),
    pytest.param(
        {"messages": HI, "stop": "END", "temperature": 1.7, "top_p": 0.9, "max_tokens": 50},
        anthropic_request(HI, max_tokens=50, stop_sequences=["END"], temperature=1.0),
        id="temperature_is_clamped_to_one_and_wins_over_top_p",
    ),
    pytest.param(
        {"messages": HI, "stop": ["a", "b"], "top_p": 0.5, "max_completion_tokens": 9, "max_tokens": 50},
        anthropic_request(HI, max_tokens=9, stop_sequences=["a", "b"], top_p=0.5),
        id="max_completion_tokens_wins_and_top_p_alone_is_kept",
    ),
    pytest.param(
        {
            "messages": HI,
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "user-42",
            "frequency_penalty": 0.5,
            "presence_penalty": 0.1,
            "seed": 7,
            "reasoning_effort": "low",
            "service_tier": "auto",
            "store": True,
            "metadata": {"team": "x"},
            "prediction": {"type": "content", "content": "x"},
            "prompt_cache_key": "k",
            "response_format": {"type": "text"},
        },
        anthropic_request(HI, stream=True, metadata={"user_id": "user-42"}),
        id="stream_and_user_map_and_sampling_hints_are_dropped",
    ),
    pytest.param(
        {"messages": HI, "safety_identifier": "hash-1"},
        anthropic_request(HI, metadata={"user_id": "hash-1"}),
        id="safety_identifier_becomes_the_user_id",
    ),
]


@pytest.mark.parametrize(("body", "expected"), OPENAI_TO_ANTHROPIC)
def test_openai_request_translates_to_anthropic(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_anthropic(body) == expected


TOOL_CHOICES = [
    pytest.param({}, None, id="absent_stays_absent"),
    pytest.param({"tool_choice": "auto"}, {"type": "auto"}, id="auto"),
    pytest.param({"tool_choice": "none"}, {"type": "none"}, id="none"),
    pytest.param({"tool_choice": "required"}, {"type": "any"}, id="required_becomes_any"),
    pytest.param(
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"type": "tool", "name": "get_weather"},
        id="named_function_becomes_tool",
    ),
    pytest.param(
        {"parallel_tool_calls": False},
        {"type": "auto", "disable_parallel_tool_use": True},
        id="parallel_tool_calls_false_disables_parallel_use",
    ),
    pytest.param(
        {"tool_choice": "required", "parallel_tool_calls": False},
        {"type": "any", "disable_parallel_tool_use": True},
        id="required_without_parallel_calls",
    ),
    pytest.param(
        {"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}, id="none_ignores_parallel"
    ),
]


@pytest.mark.parametrize(("fields", "expected_choice"), TOOL_CHOICES)
def test_openai_tools_and_tool_choice_translate(fields: dict[str, Any], expected_choice: dict | None) -> None:
    out = to_anthropic({"messages": HI, "tools": [OPENAI_WEATHER_TOOL], **fields})
    assert out["tools"] == [ANTHROPIC_WEATHER_TOOL]
    assert out.get("tool_choice") == expected_choice


def test_a_tool_without_parameters_gets_an_empty_object_schema() -> None:
    out = to_anthropic({"messages": HI, "tools": [{"type": "function", "function": {"name": "now"}}]})
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


def test_tool_choice_without_tools_is_dropped() -> None:
    out = to_anthropic({"messages": HI, "tool_choice": "none", "parallel_tool_calls": False})
    assert "tool_choice" not in out
    assert "tools" not in out


def test_default_max_tokens_applies_when_the_client_set_none() -> None:
    assert to_anthropic({"messages": HI}, default_max_tokens=777)["max_tokens"] == 777


def test_the_upstream_model_replaces_the_requested_one() -> None:
    assert to_anthropic({"messages": HI}, upstream_model="claude-haiku-4-5")["model"] == "claude-haiku-4-5"


def test_the_input_body_is_not_modified() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        "tools": [OPENAI_WEATHER_TOOL],
    }
    snapshot = repr(body)
    to_anthropic(body)
    assert repr(body) == snapshot


OPENAI_MALFORMED = [
    pytest.param(
        [{"role": "assistant", "tool_calls": [call("c1", "f", "{not json")]}],
        "not valid JSON",
        id="tool_arguments_that_are_not_json",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [call("c1", "f", "[1, 2]")]}],
        "must be a JSON object",
        id="tool_arguments_that_are_not_an_object",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
        "http(s) URL or a base64 data: URL",
        id="an_image_url_that_is_neither_http_nor_data",
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
            }
        ],
        "input_audio",
        id="an_audio_part",
    ),
    pytest.param([{"role": "narrator", "content": "x"}], "role 'narrator'", id="an_unknown_role"),
    pytest.param([{"content": "x"}], "malformed OpenAI request", id="a_message_without_role"),
]


@pytest.mark.parametrize(("messages", "reason"), OPENAI_MALFORMED)
def test_malformed_openai_requests_raise_translation_error(messages: list[Any], reason: str) -> None:
    with pytest.raises(TranslationError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        to_anthropic({"messages": messages})


UNSUPPORTED_OPENAI = [
    pytest.param({"n": 2}, "n > 1", id="several_choices"),
    pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
    pytest.param({"top_logprobs": 3}, "logprobs", id="top_logprobs"),
    pytest.param({"response_format": {"type": "json_object"}}, "json_object", id="json_mode"),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        "json_schema",
        id="structured_outputs",
    ),
    pytest.param({"modalities": ["text", "audio"]}, "audio output", id="audio_modality"),
    pytest.param({"audio": {"voice": "alloy", "format": "wav"}}, "audio output", id="audio_parameters"),
    pytest.param({"logit_bias": {"50256": -100}}, "logit_bias", id="logit_bias"),
    pytest.param({"functions": [{"name": "f"}]}, "legacy functions", id="legacy_functions"),
    pytest.param({"web_search_options": {}}, "web_search_options", id="web_search"),
    pytest.param({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "custom", id="custom_tools"),
    pytest.param(
        {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}},
        "allowed_tools",
        id="allowed_tools_choice",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
        "file input",
        id="file_parts",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        "audio input",
        id="audio_input_parts",
    ),
    pytest.param(
        {"messages": [{"role": "function", "name": "f", "content": "1"}]}, "role function", id="fn_role"
    ),
]


@pytest.mark.parametrize(("fields", "reason"), UNSUPPORTED_OPENAI)
def test_unsupported_openai_features_name_the_reason(fields: dict[str, Any], reason: str) -> None:
    found = unsupported_openai_features({"model": "gpt-4o", "messages": HI, **fields})
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="plain"),
        pytest.param(
            {"n": 1, "logprobs": False, "response_format": {"type": "text"}}, id="defaults_spelled_out"
        ),
        pytest.param({"tools": [OPENAI_WEATHER_TOOL], "parallel_tool_calls": False}, id="function_tools"),
        pytest.param({"temperature": 2, "seed": 1, "frequency_penalty": 1}, id="droppable_hints"),
        pytest.param({"logit_bias": {}, "modalities": ["text"]}, id="empty_biases_and_text_modality"),
    ],
)
def test_translatable_openai_requests_have_no_unsupported_feature(fields: dict[str, Any]) -> None:
    assert unsupported_openai_features({"model": "gpt-4o", "messages": HI, **fields}) is None
