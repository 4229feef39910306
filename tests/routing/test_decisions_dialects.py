"""Routing decisions that depend on dialects, through the transport seam: which candidates can
express a request at all, what each provider receives (the translated body, whose credential),
and what `/v1/models` offers.

Each test drives the real `Sidecar` in-process over `MemoryTransport`s and asserts on the requests
each provider received and on the HTTP answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.memory_transport import (
    Script,
    Upstreams,
    anthropic_at,
    anthropic_text,
    body_of,
    headers_of,
    in_memory_detour,
    openai_at,
    openai_text,
    rate_limit,
    reply,
)
from tests.support.running import config_text, limits_alternative_rule

# --- candidates that cannot express the request ----------------------------------------------------------


def anthropic_then_openai() -> str:
    providers = {
        "claude": anthropic_at("claude", api_key="sk-ant", model_map={"gpt-4o": "claude-sonnet-4-5"}),
        "gpt": openai_at("gpt"),
    }
    return config_text(providers, [limits_alternative_rule(["claude"], ["gpt"])])


def openai_then_anthropic() -> str:
    providers = {
        "gpt": openai_at("gpt", api_key="sk-oa", model_map={"claude-sonnet-4-5": "gpt-4o"}),
        "claude": anthropic_at("claude"),
    }
    return config_text(providers, [limits_alternative_rule(["gpt"], ["claude"])])


OPENAI_ONLY = {
    "n": {"n": 2},
    "logprobs": {"logprobs": True, "top_logprobs": 3},
    "json_object": {"response_format": {"type": "json_object"}},
    "json_schema": {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {}}},
        }
    },
    "audio": {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
}


@pytest.mark.parametrize("fields", list(OPENAI_ONLY.values()), ids=list(OPENAI_ONLY))
async def test_an_openai_request_anthropic_cannot_express_skips_the_anthropic_candidate_uncalled(
    fields: dict[str, Any],
) -> None:
    upstreams = Upstreams()
    async with in_memory_detour(anthropic_then_openai(), upstreams) as detour:
        response = await detour.chat(**fields)

    assert response.status_code == 200
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("gpt", "1")
    assert upstreams.order == ["gpt"], "the Anthropic candidate was never called"
    sent = upstreams.bodies("gpt")[0]
    assert all(sent[key] == value for key, value in fields.items()), "passed on unchanged in its own dialect"


ANTHROPIC_ONLY = {
    "thinking": {"thinking": {"type": "enabled", "budget_tokens": 2048}},
    "prefill": {
        "messages": [
            {"role": "user", "content": "Name a colour"},
            {"role": "assistant", "content": "The colour is"},
        ]
    },
    "server-tool": {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
    "document": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "A memo."},
                    },
                    {"type": "text", "text": "Summarise"},
                ],
            }
        ]
    },
}


@pytest.mark.parametrize("fields", list(ANTHROPIC_ONLY.values()), ids=list(ANTHROPIC_ONLY))
async def test_an_anthropic_request_openai_cannot_express_skips_the_openai_candidate_uncalled(
    fields: dict[str, Any],
) -> None:
    upstreams = Upstreams()
    async with in_memory_detour(openai_then_anthropic(), upstreams) as detour:
        response = await detour.messages(**fields)

    assert response.status_code == 200
    assert response.json()["type"] == "message"
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("claude", "1")
    assert upstreams.order == ["claude"]


async def test_when_no_candidate_can_express_an_openai_request_the_client_gets_400_naming_the_reason() -> (
    None
):
    providers = {
        "claude": anthropic_at("claude", api_key="sk-ant", model_map={"gpt-4o": "claude-sonnet-4-5"})
    }
    upstreams = Upstreams()
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["claude"])]), upstreams
    ) as detour:
        response = await detour.chat(n=2)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "claude" in error["message"]
    assert "n > 1" in error["message"]
    assert upstreams.log == []


async def test_when_no_candidate_can_express_an_anthropic_request_the_client_gets_400_in_its_shape() -> None:
    providers = {"gpt": openai_at("gpt", api_key="sk-oa", model_map={"claude-sonnet-4-5": "gpt-4o"})}
    upstreams = Upstreams()
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["gpt"])]), upstreams
    ) as detour:
        response = await detour.messages(thinking={"type": "enabled", "budget_tokens": 2048})

    assert response.status_code == 400
    body = response.json()
    assert (body["type"], body["error"]["type"]) == ("error", "invalid_request_error")
    assert "extended thinking" in body["error"]["message"]
    assert upstreams.log == []


async def test_an_ineligible_candidate_does_not_turn_an_all_limited_answer_into_a_400() -> None:
    providers = {
        "gpt": openai_at("gpt"),
        "claude": anthropic_at("claude", api_key="sk-ant", model_map={"gpt-4o": "claude-sonnet-4-5"}),
    }
    upstreams = Upstreams(gpt=rate_limit("30"))
    text = config_text(providers, [limits_alternative_rule(["gpt"], ["claude"])])
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.chat(n=2)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert upstreams.order == ["gpt"]


# --- what the other dialect receives ---------------------------------------------------------------------


async def test_an_openai_request_reaches_an_anthropic_provider_translated_and_its_answer_comes_back() -> None:
    providers = {
        "gpt": openai_at("gpt"),
        "claude": anthropic_at("claude", api_key="sk-ant", model_map={"gpt-4o": "claude-sonnet-4-5"}),
    }
    upstreams = Upstreams(gpt=Script(rate_limit("30")), claude=reply("Bonjour from Claude"))
    text = config_text(providers, [limits_alternative_rule(["gpt"], ["claude"])])
    messages = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]
    async with in_memory_detour(text, upstreams) as detour:
        whole = await detour.chat(messages=messages, stop=["END"], temperature=1.7)
        streamed = await detour.chat(messages=messages, stream=True)

    sent = upstreams.bodies("claude")[0]
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["system"] == "Be brief"
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert sent["max_tokens"] == 4096, "routing.default_max_tokens"
    assert sent["stop_sequences"] == ["END"]
    assert sent["temperature"] == 1.0, "clamped to Anthropic's range"
    assert upstreams.to("claude")[0].url == "http://claude.test/v1/messages"

    completion = whole.json()
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "claude-sonnet-4-5", "the model that really answered"
    assert completion["choices"][0]["message"]["content"] == "Bonjour from Claude"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert (whole.headers["x-detour-provider"], whole.headers["x-detour-model"]) == (
        "claude",
        "claude-sonnet-4-5",
    )
    assert openai_text(streamed) == "Bonjour from Claude"
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert upstreams.bodies("claude")[1]["stream"] is True


async def test_an_anthropic_request_reaches_an_openai_provider_translated_and_its_answer_comes_back() -> None:
    upstreams = Upstreams(gpt=reply("Hello from GPT"))
    providers = {"gpt": openai_at("gpt", api_key="sk-oa", model_map={"claude-sonnet-4-5": "gpt-4o"})}
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["gpt"])]), upstreams
    ) as detour:
        response = await detour.messages(system="Be brief", stream=True)

    sent = upstreams.bodies("gpt")[0]
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hello"},
    ]
    assert sent["max_tokens"] == 64
    assert sent["stream_options"] == {"include_usage": True}, "usage must come back for the Anthropic client"
    events = [
        line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")
    ]
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert anthropic_text(response) == "Hello from GPT"


# --- credentials -------------------------------------------------------------------------------------------


def _all_header_values(request: Any) -> str:
    return " ".join(value for _, value in request.headers)


async def test_an_openai_clients_key_goes_only_to_providers_of_its_own_dialect() -> None:
    providers = {
        "gpt": openai_at("gpt"),
        "claude": anthropic_at("claude", model_map={"gpt-4o": "claude-sonnet-4-5"}),
    }
    upstreams = Upstreams(gpt=rate_limit("30"))
    text = config_text(providers, [limits_alternative_rule(["gpt"], ["claude"])])
    async with in_memory_detour(text, upstreams) as detour:
        await detour.chat(headers={"authorization": "Bearer sk-client", "openai-organization": "org-1"})

    gpt, claude = upstreams.to("gpt")[0], upstreams.to("claude")[0]
    assert headers_of(gpt)["authorization"] == "Bearer sk-client"
    assert headers_of(gpt)["openai-organization"] == "org-1"
    assert "authorization" not in headers_of(claude)
    assert "x-api-key" not in headers_of(claude)
    assert "sk-client" not in _all_header_values(claude), "a credential never crosses dialects"
    assert "openai-organization" not in headers_of(claude)
    assert headers_of(claude)["anthropic-version"] == "2023-06-01"


async def test_an_anthropic_clients_key_and_options_go_only_to_anthropic_providers() -> None:
    providers = {
        "claude": anthropic_at("claude"),
        "gpt": openai_at("gpt", model_map={"claude-sonnet-4-5": "gpt-4o"}),
    }
    upstreams = Upstreams(claude=rate_limit("30"))
    text = config_text(providers, [limits_alternative_rule(["claude"], ["gpt"])])
    client_headers = {
        "x-api-key": "sk-ant-client",
        "anthropic-version": "2023-01-01",
        "anthropic-beta": "b-1",
    }
    async with in_memory_detour(text, upstreams) as detour:
        await detour.messages(headers=client_headers)

    claude, gpt = headers_of(upstreams.to("claude")[0]), headers_of(upstreams.to("gpt")[0])
    assert claude["x-api-key"] == "sk-ant-client"
    assert (claude["anthropic-version"], claude["anthropic-beta"]) == ("2023-01-01", "b-1")
    assert "authorization" not in gpt
    assert "x-api-key" not in gpt
    assert "anthropic-beta" not in gpt


async def test_a_provider_with_its_own_api_key_uses_it_and_never_the_clients() -> None:
    providers = {
        "gpt": openai_at("gpt", api_key="$GPT_KEY"),
        "claude": anthropic_at("claude", api_key="$CLAUDE_KEY", model_map={"gpt-4o": "claude-sonnet-4-5"}),
    }
    env = {"GPT_KEY": "sk-configured-gpt", "CLAUDE_KEY": "sk-configured-claude"}
    upstreams = Upstreams(gpt=rate_limit("30"))
    text = config_text(providers, [limits_alternative_rule(["gpt"], ["claude"])])
    async with in_memory_detour(text, upstreams, env=env) as detour:
        response = await detour.chat(headers={"authorization": "Bearer sk-client-own"})
        state = (await detour.request("GET", "/admin/state")).text

    assert response.headers["x-detour-provider"] == "claude"
    gpt, claude = upstreams.to("gpt")[0], upstreams.to("claude")[0]
    assert headers_of(gpt)["authorization"] == "Bearer sk-configured-gpt"
    assert headers_of(claude)["x-api-key"] == "sk-configured-claude"
    assert "authorization" not in headers_of(claude)
    for request in (gpt, claude):
        assert "sk-client-own" not in _all_header_values(request)
    assert "sk-configured" not in state, "/admin/state never shows a credential"


async def test_a_credential_in_the_providers_headers_counts_as_its_own() -> None:
    providers = {
        "gateway": openai_at("gateway", headers={"Authorization": "Bearer gw-token", "X-Team": "search"})
    }
    upstreams = Upstreams()
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["gateway"])]), upstreams
    ) as detour:
        await detour.chat(
            headers={"authorization": "Bearer sk-client", "cookie": "session=1", "x-stainless-os": "Linux"}
        )

    sent = headers_of(upstreams.to("gateway")[0])
    assert sent["authorization"] == "Bearer gw-token"
    assert sent["x-team"] == "search"
    assert "sk-client" not in _all_header_values(upstreams.to("gateway")[0])
    assert "cookie" not in sent, "only an allow-list of client headers is forwarded"
    assert "x-stainless-os" not in sent


# --- /v1/models ---------------------------------------------------------------------------------------------


def models_config() -> str:
    providers = {
        "gpt": openai_at(
            "gpt", model_map={"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
        ),
        "claude": anthropic_at(
            "claude", model_map={"gpt-4o": "claude-sonnet-4-5", "claude-only": "claude-haiku-4-5"}
        ),
        "large": openai_at("large", model="gpt-4.1"),
    }
    rule = limits_alternative_rule(["gpt"], ["claude"], fallbacks=["large"], pattern="^gpt-")
    return config_text(providers, [rule])


async def test_v1_models_lists_the_models_the_rules_can_serve_in_openai_shape() -> None:
    upstreams = Upstreams()
    async with in_memory_detour(models_config(), upstreams) as detour:
        response = await detour.request("GET", "/v1/models", headers={"authorization": "Bearer sk-client"})

    body = response.json()
    assert response.status_code == 200
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["gpt-4.1", "gpt-4o", "gpt-4o-mini"]
    assert all(model["object"] == "model" for model in body["data"])
    assert upstreams.log == [], "answered from the config, no provider asked"


async def test_v1_models_answers_in_anthropic_shape_to_a_client_sending_anthropic_version() -> None:
    upstreams = Upstreams()
    async with in_memory_detour(models_config(), upstreams) as detour:
        response = await detour.request(
            "GET", "/v1/models", headers={"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}
        )

    body = response.json()
    assert [model["id"] for model in body["data"]] == ["gpt-4.1", "gpt-4o", "gpt-4o-mini"]
    assert all(model["type"] == "model" and model["display_name"] == model["id"] for model in body["data"])
    assert (body["has_more"], body["first_id"], body["last_id"]) == (False, "gpt-4.1", "gpt-4o-mini")
    assert "claude-only" not in response.text, "no rule matches it"
    assert upstreams.log == []


async def test_the_requested_body_is_forwarded_unchanged_within_one_dialect() -> None:
    upstreams = Upstreams()
    providers = {"gpt": openai_at("gpt")}
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["gpt"])]), upstreams
    ) as detour:
        await detour.chat(temperature=1.7, seed=4, user="u-1")

    assert body_of(upstreams.log[0]) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 1.7,
        "seed": 4,
        "user": "u-1",
    }
