"""Across dialects, end to end with the official SDKs: an OpenAI client whose primary is limited is
answered by an Anthropic-dialect provider (and the reverse), streaming and not, tool calls included.
The client can tell only by the x-detour-* headers and the `model` field."""

from __future__ import annotations

import json

import anthropic
import openai

from sidecar.simulate import RateLimit, Reply, SimulatedProvider, ToolCall
from tests.support.running import config_text, limits_alternative_rule, provider, running_sidecar

WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def openai_first(
    primary: SimulatedProvider, alternative: SimulatedProvider, **alternative_settings: object
) -> str:
    providers = {
        "openai-primary": provider("openai", primary.base_url),
        "anthropic-alt": provider(
            "anthropic",
            alternative.base_url,
            model_map={"gpt-4o": "claude-sonnet-4-6"},
            **alternative_settings,
        ),
    }
    return config_text(providers, [limits_alternative_rule(["openai-primary"], ["anthropic-alt"])])


def anthropic_first(
    primary: SimulatedProvider, alternative: SimulatedProvider, **alternative_settings: object
) -> str:
    providers = {
        "anthropic-primary": provider("anthropic", primary.base_url),
        "openai-alt": provider(
            "openai", alternative.base_url, model_map={"claude-sonnet-4-6": "gpt-4o"}, **alternative_settings
        ),
    }
    return config_text(providers, [limits_alternative_rule(["anthropic-primary"], ["openai-alt"])])


async def test_an_openai_client_is_answered_by_anthropic_when_its_primary_is_limited() -> None:
    async with (
        SimulatedProvider("openai") as primary,
        SimulatedProvider("anthropic", api_key="sk-ant-configured", reply_text="Bonjour from Claude") as alt,
    ):
        primary.script(RateLimit(retry_after="30"))
        text = openai_first(primary, alt, api_key="sk-ant-configured")
        async with running_sidecar(text) as detour:
            client = openai.AsyncOpenAI(
                base_url=detour.openai_base_url, api_key="sk-openai-client", max_retries=0
            )
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o",
                messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
                max_tokens=50,
            )
            completion = raw.parse()
            await client.close()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Bonjour from Claude"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet-4-6"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-detour-provider"] == "anthropic-alt"
    upstream = alt.requests[0]
    assert upstream.body["system"] == "Be brief"
    assert upstream.body["model"] == "claude-sonnet-4-6"
    assert upstream.headers["x-api-key"] == "sk-ant-configured"
    assert "sk-openai-client" not in json.dumps(upstream.headers), "a credential never crosses dialects"


async def test_an_openai_client_without_a_key_for_the_alternative_is_not_given_its_own() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("anthropic") as alt:
        primary.script(RateLimit(retry_after="30"))
        async with running_sidecar(openai_first(primary, alt)) as detour:
            client = openai.AsyncOpenAI(
                base_url=detour.openai_base_url, api_key="sk-openai-client", max_retries=0
            )
            try:
                await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
                )
            except openai.AuthenticationError as exc:
                status = exc.status_code
            await client.close()

    assert status == 401, "the Anthropic provider rejects the request; the OpenAI key was not sent"
    assert "sk-openai-client" not in json.dumps(alt.requests[0].headers)


async def test_an_openai_stream_with_a_tool_call_is_answered_by_anthropic() -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="toolu_01A")
    async with SimulatedProvider("openai") as primary, SimulatedProvider("anthropic", api_key="k") as alt:
        primary.script(RateLimit(retry_after="30"))
        alt.script(Reply(tool_call=call))
        text = openai_first(primary, alt, api_key="k")
        async with running_sidecar(text) as detour:
            client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk", max_retries=0)
            async with client.chat.completions.stream(
                model="gpt-4o",
                messages=[{"role": "user", "content": "Weather in Paris?"}],
                tools=[WEATHER_TOOL_OPENAI],
            ) as stream:
                async for _ in stream:
                    pass
                final = await stream.get_final_completion()
            await client.close()

    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    (tool_call,) = message.tool_calls
    assert tool_call.id == "toolu_01A"
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert alt.requests[0].body["tools"][0]["name"] == "get_weather"


async def test_an_anthropic_client_is_answered_by_openai_with_the_stream_helper_assembling_it() -> None:
    async with (
        SimulatedProvider("anthropic") as primary,
        SimulatedProvider("openai", api_key="sk-oa", reply_text="Hello from GPT") as alt,
    ):
        primary.script(RateLimit(retry_after="30"))
        text = anthropic_first(primary, alt, api_key="sk-oa")
        async with running_sidecar(text) as detour:
            client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk-ant", max_retries=0)
            async with client.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=64,
                system="Be brief",
                messages=[{"role": "user", "content": "Hi"}],
            ) as stream:
                pieces = [piece async for piece in stream.text_stream]
                final = await stream.get_final_message()
            await client.close()

    assert "".join(pieces) == "Hello from GPT"
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hello from GPT"
    assert final.stop_reason == "end_turn"
    assert final.model == "gpt-4o"
    assert alt.requests[0].body["messages"][0] == {"role": "system", "content": "Be brief"}


async def test_an_anthropic_client_gets_an_openai_tool_call_as_a_tool_use_block() -> None:
    async with SimulatedProvider("anthropic") as primary, SimulatedProvider("openai", api_key="sk-oa") as alt:
        primary.script(RateLimit(retry_after="30"))
        alt.script(Reply(tool_call=ToolCall("get_weather", {"city": "Oslo"}, id="call_abc")))
        text = anthropic_first(primary, alt, api_key="sk-oa")
        async with running_sidecar(text) as detour:
            client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk-ant", max_retries=0)
            message = await client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                tools=[WEATHER_TOOL_ANTHROPIC],
                messages=[{"role": "user", "content": "Weather in Oslo?"}],
            )
            await client.close()

    assert message.stop_reason == "tool_use"
    (block,) = [block for block in message.content if block.type == "tool_use"]
    assert block.name == "get_weather"
    assert block.input == {"city": "Oslo"}
    assert block.id == "call_abc"
