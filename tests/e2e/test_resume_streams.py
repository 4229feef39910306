"""`resume_streams: true`: a stream cut after content reached the client is continued by the next
candidate — from an assistant prefill where the provider supports it, else from scratch and only past
the text already sent — and a refusal never replaces the original error."""

from __future__ import annotations

import anthropic
import openai
import pytest

from sidecar.simulate import CutStream, ErrorReply, SimulatedProvider
from tests.support.running import config_text, limits_alternative_rule, provider, running_sidecar

STORY = "Once upon a time there was a sidecar that never gave up on a story."
PROMPT = [{"role": "user", "content": "Tell me a story"}]


def resuming(primary: SimulatedProvider, backup: SimulatedProvider, **backup_settings: object) -> str:
    providers = {
        "primary": provider(primary.dialect, primary.base_url),
        "backup": provider(backup.dialect, backup.base_url, **backup_settings),
    }
    rule = {**limits_alternative_rule(["primary"], ["backup"]), "resume_streams": True}
    return config_text(providers, [rule])


async def read_openai_stream(base_url: str) -> tuple[str, str | None]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk", max_retries=0)
    text, finish = [], None
    stream = await client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
    async for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    await client.close()
    return "".join(text), finish


async def test_a_provider_that_supports_prefill_continues_from_the_text_already_sent() -> None:
    async with (
        SimulatedProvider("openai", reply_text=STORY) as primary,
        SimulatedProvider("anthropic", reply_text=" And they lived happily ever after.") as backup,
    ):
        primary.script(CutStream(after_events=5, how="reset"))
        text = resuming(primary, backup, supports_prefill=True, model="claude-sonnet-4-6", api_key="sk-ant")
        async with running_sidecar(text) as detour:
            received, finish = await read_openai_stream(detour.openai_base_url)

    prefill = backup.requests[0].body["messages"][-1]
    assert prefill["role"] == "assistant"
    sent = prefill["content"]
    assert sent
    assert STORY.startswith(sent.rstrip())
    assert received.startswith(sent.rstrip())
    assert received.endswith("And they lived happily ever after.")
    assert finish == "stop"
    assert [(e.from_provider, e.to_provider, e.reason) for e in detour.observer.failovers] == [
        ("primary", "backup", "resume")
    ]


async def test_a_provider_without_prefill_is_streamed_only_past_the_text_already_sent() -> None:
    async with (
        SimulatedProvider("openai", reply_text=STORY) as primary,
        SimulatedProvider("openai", reply_text=STORY) as backup,
    ):
        primary.script(CutStream(after_events=6, how="close"))
        async with running_sidecar(resuming(primary, backup)) as detour:
            received, finish = await read_openai_stream(detour.openai_base_url)

    assert received == STORY, "every word exactly once"
    assert finish == "stop"
    assert backup.requests[0].body["messages"] == PROMPT, "the original request, no prefill"


async def test_a_different_answer_from_scratch_is_not_spliced_on_and_the_original_error_is_reported() -> None:
    async with (
        SimulatedProvider("openai", reply_text=STORY) as primary,
        SimulatedProvider("openai", reply_text="A completely different story.") as backup,
    ):
        primary.script(CutStream(after_events=6, how="close"))
        async with running_sidecar(resuming(primary, backup)) as detour:
            with pytest.raises(openai.APIError, match="stream broke"):
                await read_openai_stream(detour.openai_base_url)

    assert len(backup.requests) == 1


async def test_a_refusal_by_the_resuming_provider_never_replaces_the_original_error() -> None:
    async with (
        SimulatedProvider("anthropic", reply_text=STORY) as primary,
        SimulatedProvider("anthropic") as backup,
    ):
        primary.script(CutStream(after_events=6, how="reset"))
        backup.script(ErrorReply(400, "invalid_request_error", "Output blocked by content filtering policy"))
        async with running_sidecar(resuming(primary, backup, supports_prefill=True)) as detour:
            client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk", max_retries=0)
            with pytest.raises(anthropic.APIError) as raised:
                async with client.messages.stream(model="claude-x", max_tokens=64, messages=PROMPT) as stream:
                    async for _ in stream.text_stream:
                        pass
            await client.close()

    assert "content filtering" not in str(raised.value)
    assert "stream broke" in str(raised.value)
    assert len(backup.requests) == 1


async def test_an_anthropic_client_gets_the_continuation_as_more_of_the_same_message() -> None:
    async with (
        SimulatedProvider("anthropic", reply_text=STORY) as primary,
        SimulatedProvider("anthropic", reply_text=STORY) as backup,
    ):
        primary.script(CutStream(after_events=7, how="close"))
        async with running_sidecar(resuming(primary, backup)) as detour:
            client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk", max_retries=0)
            async with client.messages.stream(model="claude-x", max_tokens=64, messages=PROMPT) as stream:
                pieces = [piece async for piece in stream.text_stream]
                final = await stream.get_final_message()
            await client.close()

    assert "".join(pieces) == STORY
    assert final.content[0].text == STORY
    assert final.stop_reason == "end_turn"
