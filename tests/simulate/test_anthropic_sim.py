"""The Anthropic simulator, driven by the official `anthropic` SDK over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam

from sidecar.simulate import ErrorReply, RateLimit, Reply, ServerError, SimulatedProvider, ToolCall

MESSAGES: list[MessageParam] = [{"role": "user", "content": "Say hello"}]
MODEL = "claude-sonnet-4-6"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedProvider]:
    async with SimulatedProvider("anthropic", name="an") as provider:
        yield provider


@pytest.fixture
async def client(sim: SimulatedProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


async def test_base_url_is_the_bare_origin_as_the_sdk_expects(sim: SimulatedProvider) -> None:
    assert sim.base_url == f"http://127.0.0.1:{sim.port}"


async def test_a_non_streaming_reply_parses_into_a_text_block(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)

    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the simulated provider."
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)


async def test_finish_reasons_in_openai_words_are_translated(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(Reply(finish_reason="length"))
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"


async def test_the_stream_helper_assembles_the_final_message(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(Reply(text="one two three", usage=(30, 3)))
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()

    assert pieces == ["one", " two", " three"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "one two three"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 3)


async def test_the_raw_stream_follows_the_real_event_order(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(Reply(text="hi there"))
    stream = await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    kinds = [event.type async for event in stream]

    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK drops `ping`; the wire test below sees it


async def test_a_tool_call_parses_into_a_tool_use_block(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(Reply(tool_call=ToolCall("get_weather", {"city": "Paris"}, id="toolu_1")))
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)

    [block] = message.content
    assert block.type == "tool_use"
    assert (block.id, block.name, block.input) == ("toolu_1", "get_weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"


async def test_a_streamed_tool_call_with_text_assembles_both_blocks(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(Reply(text="Let me check.", tool_call=ToolCall("get_weather", {"city": "Paris", "days": 3})))
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        message = await stream.get_final_message()

    text, tool = message.content
    assert text.type == "text"
    assert text.text == "Let me check."
    assert tool.type == "tool_use"
    assert tool.id.startswith("toolu_")
    assert tool.input == {"city": "Paris", "days": 3}
    assert message.stop_reason == "tool_use"


async def test_a_rate_limit_raises_the_sdk_error_with_the_real_headers(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(RateLimit(retry_after="30"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)

    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.body["error"]["message"].startswith("This request would exceed the rate limit")
    headers = error.response.headers
    assert headers["retry-after"] == "30"
    assert headers["request-id"].startswith("req_")
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"])
    assert 25 <= (reset - datetime.now(UTC)).total_seconds() <= 31


async def test_an_overloaded_server_is_529_overloaded_error(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    sim.script(ServerError(529), ServerError())
    with pytest.raises(anthropic.APIStatusError) as caught:
        await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert caught.value.status_code == 529
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }

    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_prompt_too_long_is_an_invalid_request_error(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    too_long = "prompt is too long: 210000 tokens > 200000 maximum"
    sim.script(ErrorReply(400, "invalid_request_error", too_long))
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": too_long},
    }


async def test_requests_are_recorded_with_the_sdk_headers(
    sim: SimulatedProvider, client: anthropic.AsyncAnthropic
) -> None:
    await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)

    [recorded] = sim.requests
    assert recorded.path == "/v1/messages"
    # anthropic >= 2.x sends the API key as a bearer token, older SDKs as x-api-key
    assert recorded.headers.get("x-api-key", recorded.headers.get("authorization")) in ("k", "Bearer k")
    assert recorded.headers["anthropic-version"]
    assert recorded.body == {"model": MODEL, "max_tokens": 100, "messages": MESSAGES}


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, {"model": MODEL}, 401, "x-api-key header is required"),
        ({"x-api-key": "k"}, {"model": MODEL}, 400, "anthropic-version: header is required"),
        (
            {"x-api-key": "k", "anthropic-version": "2023-06-01"},
            {"model": MODEL, "messages": MESSAGES},
            400,
            "max_tokens: Field required",
        ),
    ],
)
async def test_the_real_apis_preconditions_are_enforced(
    sim: SimulatedProvider, headers: dict[str, str], body: dict[str, object], status: int, message: str
) -> None:
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{sim.base_url}/v1/messages", json=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message


async def test_a_configured_api_key_rejects_any_other_key() -> None:
    async with (
        SimulatedProvider("anthropic", api_key="right") as sim,
        anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="wrong", max_retries=0) as client,
    ):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


async def test_models_are_listed_in_the_anthropic_shape(client: anthropic.AsyncAnthropic) -> None:
    page = await client.models.list()
    assert MODEL in [model.id for model in page.data]
