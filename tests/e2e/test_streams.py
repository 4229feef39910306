"""Streams are honest: before the first content event a failure fails over transparently; after it,
the client gets an in-band error in its own dialect, never a stream that looks complete."""

from __future__ import annotations

import anthropic
import httpx
import openai
import orjson
import pytest

from sidecar.simulate import CutStream, Reply, SimulatedProvider
from tests.support.running import pair_config, running_sidecar

PROMPT = [{"role": "user", "content": "Tell me a story"}]
AUTH = {"authorization": "Bearer sk-client"}
STORY = "Once upon a time there was a sidecar that never gave up."


def _contents(frames: list[str]) -> str:
    chunks = [orjson.loads(frame.removeprefix("data: ")) for frame in frames]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])


@pytest.mark.parametrize("how", ["close", "reset", "end"])
async def test_an_openai_stream_cut_before_any_content_fails_over_transparently(how: str) -> None:
    async with (
        SimulatedProvider("openai") as primary,
        SimulatedProvider("openai", reply_text=STORY) as backup,
    ):
        primary.default = CutStream(after_events=1, how=how)  # the role-only chunk, then nothing
        async with running_sidecar(pair_config(primary, backup)) as detour:
            client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk", max_retries=0)
            stream = await client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
            await client.close()

    assert text == STORY
    assert [event.reason for event in detour.observer.failovers] == ["stream_error"]


async def test_an_openai_stream_cut_after_content_ends_with_an_in_band_error() -> None:
    async with (
        SimulatedProvider("openai", reply_text=STORY) as primary,
        SimulatedProvider("openai") as backup,
    ):
        primary.script(CutStream(after_events=4, how="close"))
        async with running_sidecar(pair_config(primary, backup)) as detour:
            client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk", max_retries=0)
            stream = await client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
            received: list[str] = []
            with pytest.raises(openai.APIError, match="stream"):
                async for chunk in stream:
                    received.append(chunk.choices[0].delta.content or "")
            await client.close()

    assert "".join(received), "the content before the cut reached the client"
    assert STORY.startswith("".join(received))
    assert backup.requests == [], "after content reached the client there is no silent switch"


async def test_an_openai_stream_without_done_is_finished_by_the_sidecar() -> None:
    body = {"model": "gpt-4o", "messages": PROMPT, "stream": True}
    async with (
        SimulatedProvider("openai", reply_text=STORY) as primary,
        SimulatedProvider("openai") as backup,
        httpx.AsyncClient(headers=AUTH) as client,
    ):
        direct = await client.post(primary.base_url + "/chat/completions", json=body)
        direct_frames = [frame for frame in direct.text.split("\n\n") if frame]
        assert direct_frames[-1] == "data: [DONE]"
        primary.script(CutStream(after_events=len(direct_frames) - 1, how="end"))  # all but [DONE]
        async with running_sidecar(pair_config(primary, backup)) as detour:
            response = await client.post(detour.url + "/v1/chat/completions", json=body)

    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert len(frames) == len(direct_frames), "every upstream event is forwarded, [DONE] added once"
    assert _contents(frames[:-1]) == _contents(direct_frames[:-1]) == STORY
    assert frames[-1] == "data: [DONE]"
    assert sum(frame == "data: [DONE]" for frame in frames) == 1


async def test_an_anthropic_stream_cut_after_content_ends_with_an_error_event() -> None:
    async with (
        SimulatedProvider("anthropic", reply_text=STORY) as primary,
        SimulatedProvider("anthropic") as backup,
    ):
        primary.script(CutStream(after_events=5, how="reset"))
        async with running_sidecar(pair_config(primary, backup)) as detour:
            client = anthropic.AsyncAnthropic(base_url=detour.url, api_key="sk", max_retries=0)
            with pytest.raises(anthropic.APIError):
                async with client.messages.stream(model="claude-x", max_tokens=64, messages=PROMPT) as stream:
                    async for _ in stream.text_stream:
                        pass
            await client.close()

    assert backup.requests == []


async def test_the_first_bytes_reach_the_client_only_after_the_first_content_event() -> None:
    async with (
        SimulatedProvider("anthropic", reply_text=STORY) as primary,
        SimulatedProvider("anthropic") as backup,
    ):
        primary.script(Reply())
        async with running_sidecar(pair_config(primary, backup)) as detour:
            async with httpx.AsyncClient() as client:
                body = {"model": "claude-x", "max_tokens": 64, "messages": PROMPT, "stream": True}
                response = await client.post(
                    detour.url + "/v1/messages", json=body, headers={"x-api-key": "k"}
                )

    events = [
        line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")
    ]
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert "content_block_delta" in events
    assert response.headers["x-detour-provider"] == "primary"
