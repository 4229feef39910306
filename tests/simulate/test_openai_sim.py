"""The OpenAI simulator, driven by the official `openai` SDK over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam

from sidecar.simulate import ErrorReply, RateLimit, Reply, ServerError, SimulatedProvider, ToolCall

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedProvider]:
    async with SimulatedProvider("openai", name="oa") as provider:
        yield provider


@pytest.fixture
async def client(sim: SimulatedProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


async def test_base_url_follows_the_sdk_convention_with_v1(sim: SimulatedProvider) -> None:
    assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"


async def test_a_non_streaming_reply_parses_and_echoes_the_model(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o"
    choice = completion.choices[0]
    assert choice.message.content == "Hello from the simulated provider."
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 7)
    assert completion.usage.total_tokens == 19


async def test_the_model_override_replaces_the_requested_model() -> None:
    async with (
        SimulatedProvider("openai", model="gpt-4o-mini-2024-07-18") as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client,
    ):
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.model == "gpt-4o-mini-2024-07-18"


async def test_a_streamed_reply_arrives_in_several_content_chunks_then_done(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(Reply(text="one two three four", finish_reason="length"))
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert pieces == ["one", " two", " three", " four"]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks)


async def test_include_usage_adds_a_final_usage_chunk_with_no_choices(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 19
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_a_tool_call_parses_into_tool_calls(sim: SimulatedProvider, client: openai.AsyncOpenAI) -> None:
    sim.script(Reply(tool_call=ToolCall("get_weather", {"city": "Paris", "unit": "C"}, id="call_1")))
    completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")
    assert call.function.arguments == '{"city":"Paris","unit":"C"}'


async def test_a_streamed_tool_call_reassembles_from_argument_fragments(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(Reply(tool_call=ToolCall("get_weather", {"city": "Paris", "unit": "C"})))
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id is not None
    assert deltas[0].id.startswith("call_")
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert arguments == '{"city":"Paris","unit":"C"}'
    assert len(deltas) > 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_rate_limit_raises_the_sdk_error_with_the_real_headers(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(RateLimit(retry_after="20", reset_after_s=360))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert "Rate limit reached for gpt-4o" in error.message
    headers = error.response.headers
    assert headers["retry-after"] == "20"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "6m0s"
    assert headers["x-ratelimit-limit-tokens"].isdigit()
    assert headers["x-request-id"].startswith("req_")


async def test_a_rate_limit_without_retry_after_sends_no_such_header(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(RateLimit(headers={"retry-after-ms": "1500"}))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert "retry-after" not in caught.value.response.headers
    assert caught.value.response.headers["retry-after-ms"] == "1500"


async def test_an_exhausted_quota_has_the_insufficient_quota_body(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(RateLimit(quota=True))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    body = caught.value.body
    assert isinstance(body, dict)
    assert body["message"].startswith("You exceeded your current quota, please check your plan")
    assert (body["type"], body["code"], body["param"]) == ("insufficient_quota", "insufficient_quota", None)


async def test_a_server_error_raises_internal_server_error(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(ServerError())
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


async def test_context_length_exceeded_is_a_bad_request_with_its_code(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    too_long = "This model's maximum context length is 128000 tokens."
    sim.script(
        ErrorReply(400, "invalid_request_error", too_long, code="context_length_exceeded", param="messages")
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"


async def test_the_script_runs_in_order_then_falls_back_to_the_default(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.default = Reply(text="default")
    sim.script(RateLimit(), Reply(text="scripted"))

    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    texts = [
        (await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)).choices[0].message.content
        for _ in range(2)
    ]
    assert texts == ["scripted", "default"]


async def test_requests_are_recorded_with_lower_cased_headers_and_the_parsed_body(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"X-Trace": "t1"})

    [recorded] = sim.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == "Bearer k"
    assert recorded.headers["x-trace"] == "t1"
    assert recorded.body == {"model": "gpt-4o", "messages": MESSAGES}


async def test_a_missing_api_key_is_401_and_a_wrong_configured_key_is_invalid_api_key() -> None:
    async with SimulatedProvider("openai", api_key="sk-right-key-123") as sim:
        async with openai.AsyncOpenAI(
            base_url=sim.base_url, api_key="sk-wrong-key-456", max_retries=0
        ) as bad:
            with pytest.raises(openai.AuthenticationError) as caught:
                await bad.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert caught.value.code == "invalid_api_key"
        async with openai.AsyncOpenAI(
            base_url=sim.base_url, api_key="sk-right-key-123", max_retries=0
        ) as good:
            await good.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        async with httpx.AsyncClient() as raw:  # the SDK refuses to send no key at all
            response = await raw.post(f"{sim.base_url}/chat/completions", json={"model": "m"})
        assert response.status_code == 401
        assert response.json()["error"]["message"].startswith("You didn't provide an API key.")


async def test_a_request_without_messages_is_rejected_without_consuming_the_script(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    sim.script(Reply(text="kept"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.param == "messages"

    completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "kept"


async def test_models_are_listed_in_the_openai_shape(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]
    assert "gpt-4o" in models
