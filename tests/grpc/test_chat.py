"""`Gateway.Chat` / `ChatStream`: the typed, dialect-neutral chat. The request reaches the serving
candidate in its own dialect (the primary untranslated, a failover translated as over HTTP); answers
of either dialect come back typed; every error is a status code with details (docs/grpc.md)."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2

from sidecar.ingress.grpc._generated import gateway_pb2 as pb
from sidecar.simulate.behaviours import ToolCall
from tests.grpc.support import (
    CALL_TIMEOUT_S,
    OPENAI_KEY,
    collect,
    details_of,
    grpc_detour,
    pair,
    rpc_error,
    text_request,
)
from tests.support.memory_transport import (
    Upstreams,
    anthropic_at,
    body_of,
    connection_reset,
    dialect_of,
    error,
    headers_of,
    openai_at,
    rate_limit,
    reply,
    server_error,
    streamed,
)
from tests.support.running import config_text, limits_alternative_rule

# Both dialects serve `gpt-4o`: the Anthropic provider maps it to its own model.
PROVIDERS = {
    "openai": lambda name: openai_at(name, api_key=f"sk-{name}"),
    "anthropic": lambda name: anthropic_at(name, api_key=f"sk-ant-{name}", model_map={"gpt-4o": "claude-x"}),
}
WEATHER = pb.Tool(
    name="get_weather",
    description="The weather in a city",
    parameters_json='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}',
)


def _pair(primary: str, backup: str) -> str:
    return pair(PROVIDERS[primary]("primary"), PROVIDERS[backup]("backup"))


def _retry_delay_s(status: Any) -> float:
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    raise AssertionError("no RetryInfo")


def _error_info(status: Any) -> Any:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


EVERY_PAIR = [
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("openai", "anthropic"),
    ("anthropic", "openai"),
]


@pytest.mark.parametrize(("primary", "backup"), EVERY_PAIR)
async def test_chat_fails_over_on_429_in_both_dialects_and_across_them(primary: str, backup: str) -> None:
    upstreams = Upstreams(primary=rate_limit("30"), backup=reply("Hi from the backup."))
    async with grpc_detour(_pair(primary, backup), upstreams) as detour:
        system = pb.Message(role="system", parts=[pb.Part(text="Be brief.")])
        user = pb.Message(role="user", parts=[pb.Part(text="Hello")])
        request = pb.ChatRequest(model="gpt-4o", messages=[system, user], max_tokens=50, temperature=0.5)
        response = await detour.gateway.Chat(request, timeout=CALL_TIMEOUT_S)

    assert [part.text for part in response.message.parts] == ["Hi from the backup."]
    assert (response.message.role, response.finish_reason) == ("assistant", "stop")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 7)
    assert (response.served.provider, response.served.attempts) == ("backup", 2)
    first, second = upstreams.log
    assert dialect_of(first) == primary, "built in the dialect of the candidate expected to serve it"
    assert dialect_of(second) == backup
    for request_sent in upstreams.log:
        body = body_of(request_sent)
        assert body["temperature"] == 0.5
        assert body["max_tokens"] == 50
        if dialect_of(request_sent) == "anthropic":
            assert body["system"] == "Be brief."
            assert body["messages"] == [{"role": "user", "content": "Hello"}]
        else:
            assert body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_the_first_candidate_not_limited_decides_the_dialect() -> None:
    upstreams = Upstreams(primary=rate_limit("30"))
    async with grpc_detour(_pair("openai", "anthropic"), upstreams) as detour:
        await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)  # primary limited now
        upstreams.clear()
        await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)

    [request] = upstreams.log
    assert dialect_of(request) == "anthropic"
    assert body_of(request)["model"] == "claude-x"


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_tool_calls_go_out_and_come_back_typed(dialect: str) -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="call_1")
    upstreams = Upstreams(primary=reply(None, tool_call=call))
    history = [
        pb.Message(role="user", parts=[pb.Part(text="Weather in Rome, then Paris?")]),
        pb.Message(
            role="assistant",
            tool_calls=[pb.ToolCall(id="call_0", name="get_weather", arguments_json='{"city":"Rome"}')],
        ),
        pb.Message(role="tool", tool_call_id="call_0", parts=[pb.Part(text="Sunny, 24 C")]),
    ]
    request = pb.ChatRequest(model="gpt-4o", messages=history, tools=[WEATHER], tool_choice="auto")
    async with grpc_detour(_pair(dialect, dialect), upstreams) as detour:
        response = await detour.gateway.Chat(request, timeout=CALL_TIMEOUT_S)
        chunks = await collect(detour.gateway.ChatStream(request, timeout=CALL_TIMEOUT_S))

    [typed] = response.message.tool_calls
    assert (typed.id, typed.name, orjson.loads(typed.arguments_json)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert response.finish_reason == "tool_calls"
    pieces = [chunk.tool_call_delta for chunk in chunks if chunk.HasField("tool_call_delta")]
    assert pieces[0].name == "get_weather"
    assert {piece.index for piece in pieces} == {0}
    assert orjson.loads("".join(piece.arguments_json for piece in pieces)) == {"city": "Paris"}
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["tool_calls"]
    sent = body_of(upstreams.log[0])
    if dialect == "anthropic":
        assert sent["tools"][0]["input_schema"]["required"] == ["city"]
        assert sent["messages"][1]["content"][0] == {
            "type": "tool_use", "id": "call_0", "name": "get_weather", "input": {"city": "Rome"},
        }  # fmt: skip
        assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    else:
        assert sent["tools"][0]["function"]["parameters"]["required"] == ["city"]
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_0", "content": "Sunny, 24 C"}


@pytest.mark.parametrize(("primary", "backup"), EVERY_PAIR)
async def test_chat_stream_fails_over_and_sets_served_on_the_first_chunk(primary: str, backup: str) -> None:
    upstreams = Upstreams(primary=rate_limit("30"), backup=reply("one two three"))
    async with grpc_detour(_pair(primary, backup), upstreams) as detour:
        chunks = await collect(detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S))

    assert "".join(chunk.text_delta for chunk in chunks) == "one two three"
    assert (chunks[0].served.provider, chunks[0].served.attempts) == ("backup", 2)
    assert not any(chunk.HasField("served") for chunk in chunks[1:])
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["stop"]
    [usage] = [chunk.usage for chunk in chunks if chunk.HasField("usage")]
    assert (usage.input_tokens, usage.output_tokens) == (12, 7)


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_chat_stream_cut_after_its_first_chunk_ends_unavailable(dialect: str) -> None:
    upstreams = Upstreams(primary=streamed("one two three four", keep=4, then=[connection_reset()]))
    async with grpc_detour(_pair(dialect, dialect), upstreams) as detour:
        call = detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S)
        texts = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for chunk in call:
                texts.append(chunk.text_delta)

    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "the provider's stream broke" in raised.value.details()
    assert texts
    assert "".join(texts) != "one two three four"


async def test_everything_limited_is_resource_exhausted_with_retry_info() -> None:
    upstreams = Upstreams(primary=rate_limit("30"), backup=rate_limit("12"))
    async with grpc_detour(_pair("openai", "anthropic"), upstreams) as detour:
        call = detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        failed = await rpc_error(call)
        status = await details_of(call)
        stream = detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S)
        failed_stream = await rpc_error(stream)

    assert failed.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "all candidates are rate-limited" in failed.details()
    assert _retry_delay_s(status) == 12.0, "the soonest expiry"
    assert _error_info(status).reason == "ALL_CANDIDATES_LIMITED"
    assert failed_stream.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_providers_4xx_maps_to_a_code_with_its_message(dialect: str, status: int, code: Any) -> None:
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
    upstreams = Upstreams(
        primary=error(status, kind.get(status, "not_found_error"), f"the provider says {status}")
    )
    async with grpc_detour(_pair(dialect, dialect), upstreams) as detour:
        call = detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        failed = await rpc_error(call)
        info = _error_info(await details_of(call))

    assert (failed.code(), failed.details()) == (code, f"the provider says {status}")
    assert (info.reason, info.metadata["http_status"], info.metadata["provider"]) == (
        "PROVIDER_ERROR", str(status), "primary",
    )  # fmt: skip
    assert upstreams.order == ["primary"], "no failover on the client's own error"


async def test_the_other_failures_map_to_not_found_invalid_argument_and_unavailable() -> None:
    only_gpt = config_text(
        {"primary": openai_at("primary"), "claude": anthropic_at("claude", api_key="sk-ant")},
        [limits_alternative_rule(["primary"], pattern="^gpt-"), {
            "name": "claude", "priority": 5, "matcher": {"model_pattern": "^claude-"}, "primary": "claude",
        }],
    )  # fmt: skip
    upstreams = Upstreams(primary=server_error(503))
    async with grpc_detour(only_gpt, upstreams) as detour:
        no_route = await rpc_error(detour.gateway.Chat(text_request("llama-3"), timeout=CALL_TIMEOUT_S))
        failed = await rpc_error(detour.gateway.Chat(text_request("gpt-4o"), timeout=CALL_TIMEOUT_S))
        image = pb.Part(image=pb.Image(url="ftp://example.com/cat.png"))
        inexpressible = text_request("claude-x")
        inexpressible.messages[0].parts.append(image)
        cannot = await rpc_error(detour.gateway.Chat(inexpressible, timeout=CALL_TIMEOUT_S))
        bad_role = await rpc_error(
            detour.gateway.Chat(pb.ChatRequest(model="gpt-4o", messages=[pb.Message(role="robot")]))
        )

    assert no_route.code() is grpc.StatusCode.NOT_FOUND
    assert "llama-3" in no_route.details()
    assert failed.code() is grpc.StatusCode.UNAVAILABLE
    assert "every candidate failed" in failed.details()
    assert cannot.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "no provider of this route can serve the request" in cannot.details()
    assert "image_url must be an http(s) URL" in cannot.details()
    assert bad_role.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "messages[0]" in bad_role.details()


async def test_without_a_config_chat_is_unavailable() -> None:
    async with grpc_detour(None, Upstreams()) as detour:
        failed = await rpc_error(detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S))

    assert failed.code() is grpc.StatusCode.UNAVAILABLE
    assert failed.details() == "no routing config is loaded yet"


async def test_images_reach_the_provider_in_its_dialects_shape() -> None:
    upstreams = Upstreams()
    parts = [
        pb.Part(text="What is in these?"),
        pb.Part(image=pb.Image(url="https://example.com/cat.png")),
        pb.Part(image=pb.Image(data=b"\x89PNG", media_type="image/png")),
    ]
    request = pb.ChatRequest(model="gpt-4o", messages=[pb.Message(role="user", parts=parts)])
    async with grpc_detour(_pair("anthropic", "openai"), upstreams) as detour:
        await detour.gateway.Chat(request, metadata=OPENAI_KEY, timeout=CALL_TIMEOUT_S)

    [sent] = upstreams.bodies("primary")
    assert sent["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
    ]


async def test_a_typed_clients_credential_and_options_reach_providers_of_the_chosen_dialect() -> None:
    config = pair(anthropic_at("primary"), openai_at("backup"))
    upstreams = Upstreams()
    metadata = (
        ("x-api-key", "sk-ant-client"),
        ("anthropic-beta", "tools-2024"),
        ("openai-organization", "org"),
    )
    async with grpc_detour(config, upstreams) as detour:
        await detour.gateway.Chat(text_request(), metadata=metadata, timeout=CALL_TIMEOUT_S)

    [sent] = upstreams.to("primary")
    headers = headers_of(sent)
    assert (headers["x-api-key"], headers["anthropic-beta"]) == ("sk-ant-client", "tools-2024")
    assert "openai-organization" not in headers, "only the options of the dialect the request was built in"
