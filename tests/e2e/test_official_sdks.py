"""The official `openai` and `anthropic` SDKs, unchanged, pointed at the sidecar: failover is
invisible to them but for the x-detour-* headers, and all-limited raises their RateLimitError."""

from __future__ import annotations

import anthropic
import openai
import pytest

from sidecar.simulate import RateLimit, SimulatedProvider
from tests.support.running import pair_config, running_sidecar

PROMPT = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def openai_pair():
    async with SimulatedProvider("openai", name="primary", reply_text="Hello from primary") as primary:
        async with SimulatedProvider("openai", name="backup", reply_text="Hello from backup") as backup:
            yield primary, backup


@pytest.fixture
async def anthropic_pair():
    async with SimulatedProvider("anthropic", name="primary", reply_text="Hello from primary") as primary:
        async with SimulatedProvider("anthropic", name="backup", reply_text="Hello from backup") as backup:
            yield primary, backup


async def test_the_openai_sdk_gets_the_alternative_answer_without_noticing_the_failover(openai_pair) -> None:
    primary, backup = openai_pair
    primary.script(RateLimit(retry_after="30"))
    async with running_sidecar(pair_config(primary, backup)) as detour:
        client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk-client", max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=PROMPT)
        completion = raw.parse()
        await client.close()

    assert completion.choices[0].message.content == "Hello from backup"
    assert raw.headers["x-detour-provider"] == "backup"
    assert raw.headers["x-detour-attempts"] == "2"
    assert backup.requests[0].headers["authorization"] == "Bearer sk-client"


async def test_an_openai_sdk_stream_fails_over_before_the_first_token(openai_pair) -> None:
    primary, backup = openai_pair
    primary.script(RateLimit(retry_after="30"))
    async with running_sidecar(pair_config(primary, backup)) as detour:
        client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk-client", max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=PROMPT, stream=True
        )
        stream = raw.parse()
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        await client.close()

    assert "".join(pieces) == "Hello from backup"
    assert raw.headers["x-detour-provider"] == "backup"
    assert raw.headers["content-type"].startswith("text/event-stream")


async def test_the_openai_sdk_raises_rate_limit_error_when_everything_is_limited(openai_pair) -> None:
    primary, backup = openai_pair
    primary.script(RateLimit(retry_after="30"))
    backup.script(RateLimit(retry_after="12"))
    async with running_sidecar(pair_config(primary, backup)) as detour:
        client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk-client", max_retries=0)
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(model="gpt-4o", messages=PROMPT)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
        await client.close()

    assert raised.value.response.headers["retry-after"] == "12"
    assert raised.value.code == "rate_limit_exceeded"


async def test_the_anthropic_sdk_gets_the_alternative_answer_without_noticing_the_failover(
    anthropic_pair,
) -> None:
    primary, backup = anthropic_pair
    primary.script(RateLimit(retry_after="30"))
    async with running_sidecar(pair_config(primary, backup)) as detour:
        client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk-ant-client", max_retries=0)
        raw = await client.messages.with_raw_response.create(
            model="claude-test-model", max_tokens=64, messages=PROMPT
        )
        message = await raw.parse()
        await client.close()

    assert message.content[0].text == "Hello from backup"
    assert raw.headers["x-detour-provider"] == "backup"
    forwarded = backup.requests[0].headers
    assert "sk-ant-client" in (
        forwarded.get("x-api-key", ""),
        forwarded.get("authorization", "").removeprefix("Bearer "),
    )


async def test_the_anthropic_sdk_stream_helper_assembles_the_alternative_answer(anthropic_pair) -> None:
    primary, backup = anthropic_pair
    primary.script(RateLimit(retry_after="30"))
    async with running_sidecar(pair_config(primary, backup)) as detour:
        client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk-ant-client", max_retries=0)
        async with client.messages.stream(
            model="claude-test-model", max_tokens=64, messages=PROMPT
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        await client.close()

    assert text == "Hello from backup"
    assert final.stop_reason == "end_turn"
    assert len(primary.requests) == 1
    assert len(backup.requests) == 1


async def test_the_anthropic_sdk_raises_rate_limit_error_when_everything_is_limited(anthropic_pair) -> None:
    primary, backup = anthropic_pair
    primary.script(RateLimit(retry_after="30"))
    backup.script(RateLimit(retry_after="9"))
    async with running_sidecar(pair_config(primary, backup)) as detour:
        client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk-ant-client", max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as raised:
            await client.messages.create(model="claude-test-model", max_tokens=64, messages=PROMPT)
        await client.close()

    assert raised.value.response.headers["retry-after"] == "9"
    assert raised.value.body["error"]["type"] == "rate_limit_error"
