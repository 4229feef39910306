"""Anthropic request → OpenAI request, table by table: each row is one documented rule of
`sidecar.dialects.anthropic_to_openai_request`."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.dialects.anthropic_to_openai_request import (
    anthropic_to_openai_request,
    unsupported_anthropic_features,
)
from sidecar.errors import TranslationError
from tests.dialects.fixtures import (
    ANTHROPIC_WEATHER_TOOL,
    HI,
    OPENAI_WEATHER_TOOL,
    PNG,
    anthropic_request,
    call,
    openai_request,
)


def to_openai(body: dict[str, Any], upstream_model: str = "gpt-4o") -> dict[str, Any]:
    return anthropic_to_openai_request({"model": "claude-sonnet-4-5", **body}, upstream_model=upstream_model)


ANTHROPIC_TO_OPENAI = [
    pytest.param(
        anthropic_request(HI, system="Be brief."),
        openai_request([{"role": "system", "content": "Be brief."}, *HI], max_tokens=4096),
        id="the_system_string_becomes_the_first_message",
    ),
    pytest.param(
        anthropic_request(
            HI,
            system=[
                {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "B"},
            ],
        ),
        openai_request(
            [
                {"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
                *HI,
            ],
            max_tokens=4096,
        ),
        id="system_blocks_become_text_parts_without_cache_control",
    ),
    pytest.param(
        anthropic_request(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                    ],
                }
            ]
        ),
        openai_request(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ],
            max_tokens=4096,
        ),
        id="image_blocks_become_image_url_parts",
    ),
    pytest.param(
        anthropic_request(
            [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "call the tool", "signature": "sig"},
                        {"type": "text", "text": "Checking "},
                        {"type": "text", "text": "now."},
                        {
                            "type": "tool_use",
                            "id": "toolu_01",
                            "name": "get_weather",
                            "input": {"location": "Oslo"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "-3C"},
                        {"type": "text", "text": "And in Rome?"},
                    ],
                },
            ]
        ),
        openai_request(
            [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": "Checking now.",
                    "tool_calls": [call("toolu_01", "get_weather", '{"location":"Oslo"}')],
                },
                {"role": "tool", "tool_call_id": "toolu_01", "content": "-3C"},
                {"role": "user", "content": "And in Rome?"},
            ],
            max_tokens=4096,
        ),
        id="tool_use_and_tool_result_become_tool_calls_and_tool_messages",
    ),
    pytest.param(
        anthropic_request(
            [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_02", "name": "ls", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_02",
                            "content": "no such dir",
                            "is_error": True,
                        },
                        {"type": "tool_result", "tool_use_id": "toolu_03"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_04",
                            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                        },
                    ],
                },
            ]
        ),
        openai_request(
            [
                {"role": "assistant", "content": None, "tool_calls": [call("toolu_02", "ls", "{}")]},
                {"role": "tool", "tool_call_id": "toolu_02", "content": "Error: no such dir"},
                {"role": "tool", "tool_call_id": "toolu_03", "content": ""},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_04",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            max_tokens=4096,
        ),
        id="tool_results_error_flag_empty_and_block_contents",
    ),
    pytest.param(
        anthropic_request(
            HI,
            max_tokens=300,
            stop_sequences=["\n\nHuman:"],
            temperature=0.2,
            top_p=0.8,
            top_k=40,
            stream=True,
            metadata={"user_id": "u-1"},
            service_tier="auto",
        ),
        openai_request(
            HI,
            max_tokens=300,
            stop=["\n\nHuman:"],
            temperature=0.2,
            top_p=0.8,
            stream=True,
            stream_options={"include_usage": True},
            user="u-1",
        ),
        id="sampling_stop_stream_and_user_map_and_top_k_is_dropped",
    ),
]


@pytest.mark.parametrize(("body", "expected"), ANTHROPIC_TO_OPENAI)
def test_anthropic_request_translates_to_openai(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_openai(body) == expected


ANTHROPIC_TOOL_CHOICES = [
    pytest.param(None, {}, id="absent"),
    pytest.param({"type": "auto"}, {"tool_choice": "auto"}, id="auto"),
    pytest.param({"type": "any"}, {"tool_choice": "required"}, id="any_becomes_required"),
    pytest.param({"type": "none"}, {"tool_choice": "none"}, id="none"),
    pytest.param(
        {"type": "tool", "name": "get_weather"},
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        id="tool_becomes_named_function",
    ),
    pytest.param(
        {"type": "auto", "disable_parallel_tool_use": True},
        {"tool_choice": "auto", "parallel_tool_calls": False},
        id="disable_parallel_tool_use",
    ),
]


@pytest.mark.parametrize(("choice", "expected"), ANTHROPIC_TOOL_CHOICES)
def test_anthropic_tools_and_tool_choice_translate(
    choice: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    fields: dict[str, Any] = {"tools": [{**ANTHROPIC_WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}]}
    if choice is not None:
        fields["tool_choice"] = choice
    out = to_openai(anthropic_request(HI, **fields))
    assert out["tools"] == [OPENAI_WEATHER_TOOL]
    assert {key: out[key] for key in ("tool_choice", "parallel_tool_calls") if key in out} == expected


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("gpt-4o", "max_tokens"),
        ("gpt-4.1-mini", "max_tokens"),
        ("llama-3.1-70b", "max_tokens"),
        ("o3-mini", "max_completion_tokens"),
        ("o1", "max_completion_tokens"),
        ("gpt-5", "max_completion_tokens"),
        ("openai/gpt-5-mini", "max_completion_tokens"),
    ],
)
def test_max_tokens_uses_the_field_the_openai_model_accepts(model: str, field: str) -> None:
    out = to_openai(anthropic_request(HI, max_tokens=321), upstream_model=model)
    assert out[field] == 321
    assert out.keys() & {"max_tokens", "max_completion_tokens"} == {field}


def test_a_trailing_assistant_prefill_is_kept_when_translated_directly() -> None:
    out = to_openai(anthropic_request([*HI, {"role": "assistant", "content": "The answer is"}]))
    assert out["messages"][-1] == {"role": "assistant", "content": "The answer is"}


ANTHROPIC_MALFORMED = [
    pytest.param(
        [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}],
        "'document' blocks",
        id="a_document_block",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}],
        "image source 'file'",
        id="an_image_from_the_files_api",
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}],
                    }
                ],
            }
        ],
        "must be text",
        id="an_image_inside_a_tool_result",
    ),
    pytest.param([{"role": "user"}], "malformed Anthropic request", id="a_message_without_content"),
]


@pytest.mark.parametrize(("messages", "reason"), ANTHROPIC_MALFORMED)
def test_malformed_anthropic_requests_raise_translation_error(messages: list[Any], reason: str) -> None:
    with pytest.raises(TranslationError, match=reason):
        to_openai(anthropic_request(messages))


UNSUPPORTED_ANTHROPIC = [
    pytest.param(
        {"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking", id="extended_thinking"
    ),
    pytest.param({"thinking": {"type": "adaptive"}}, "thinking", id="adaptive_thinking"),
    pytest.param(
        {"output_config": {"format": {"type": "json_schema", "schema": {}}}},
        "output_config",
        id="json_outputs",
    ),
    pytest.param(
        {"mcp_servers": [{"type": "url", "url": "https://mcp", "name": "m"}]}, "mcp", id="mcp_servers"
    ),
    pytest.param({"container": "container_1"}, "container", id="container"),
    pytest.param(
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        "web_search_20250305",
        id="server_tool",
    ),
    pytest.param({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences", id="five_stop_sequences"),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "document", "source": {"type": "base64", "data": "x"}}]}
            ]
        },
        "document",
        id="pdf_documents",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
            ]
        },
        "Files API",
        id="file_images",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}],
                        }
                    ],
                }
            ]
        },
        "tool_result",
        id="images_in_tool_results",
    ),
    pytest.param(
        {"messages": [*HI, {"role": "assistant", "content": "{"}]}, "prefill", id="assistant_prefill"
    ),
]


@pytest.mark.parametrize(("fields", "reason"), UNSUPPORTED_ANTHROPIC)
def test_unsupported_anthropic_features_name_the_reason(fields: dict[str, Any], reason: str) -> None:
    found = unsupported_anthropic_features(anthropic_request(HI) | fields)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="plain"),
        pytest.param({"thinking": {"type": "disabled"}}, id="thinking_disabled"),
        pytest.param(
            {"tools": [{**ANTHROPIC_WEATHER_TOOL, "type": "custom"}], "top_k": 5}, id="custom_tools"
        ),
        pytest.param(
            {"output_config": {"effort": "low"}, "stop_sequences": ["a", "b", "c", "d"]}, id="effort"
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
                    },
                    {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "abc"}]},
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
                    },
                ]
            },
            id="cache_control_and_history_thinking",
        ),
    ],
)
def test_translatable_anthropic_requests_have_no_unsupported_feature(fields: dict[str, Any]) -> None:
    assert unsupported_anthropic_features(anthropic_request(HI) | fields) is None
