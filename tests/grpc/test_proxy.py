"""`Gateway.Proxy` / `ProxyStream`: the body of an HTTP chat request, routed exactly as over HTTP —
the same answer bytes, status and `x-detour-*` headers as the HTTP API gives for the same request
and the same upstreams — failing over on 429 within the call, in both dialects and across them."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import grpc
import orjson
import pytest

from sidecar.ingress.grpc._generated import gateway_pb2
from tests.grpc.support import (
    ANTHROPIC_KEY,
    CALL_TIMEOUT_S,
    OPENAI_KEY,
    anthropic_messages,
    collect,
    grpc_detour,
    openai_chat,
    pair,
    rpc_error,
)
from tests.support.memory_transport import (
    Upstreams,
    anthropic_at,
    connection_reset,
    error,
    headers_of,
    in_memory_detour,
    openai_at,
    rate_limit,
    streamed,
)

OPENAI_PAIR = pair(openai_at("primary"), openai_at("backup"))
ANTHROPIC_PAIR = pair(anthropic_at("primary"), anthropic_at("backup"))
# A request answered in the other dialect after the primary's 429.
CROSS_PAIR = pair(
    anthropic_at("primary"),
    openai_at("backup", api_key="sk-backup", model_map={"claude-sonnet-4-5": "gpt-4o"}),
)
OPENAI_TO_ANTHROPIC = pair(
    openai_at("primary"), anthropic_at("backup", api_key="sk-ant-backup", model_map={"gpt-4o": "claude-x"})
)
_CREATED = re.compile(rb'"created":\d+')


def _same(body: bytes) -> bytes:
    """The provider stamps `created` from the wall clock; everything else is seeded."""
    return _CREATED.sub(b'"created":0', body)


async def _http(
    config: str, upstreams: Callable[[], Upstreams], dialect: str, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    random.seed(5)
    path, auth = (
        ("/v1/messages", ANTHROPIC_KEY) if dialect == "anthropic" else ("/v1/chat/completions", OPENAI_KEY)
    )
    async with in_memory_detour(config, upstreams()) as detour:
        response = await detour.request("POST", path, content=body, headers=dict(auth))
    return response.status_code, dict(response.headers), response.content


def _metadata(dialect: str) -> Any:
    return ANTHROPIC_KEY if dialect == "anthropic" else OPENAI_KEY


@pytest.mark.parametrize(
    ("config", "dialect", "body"),
    [
        (OPENAI_PAIR, "openai", openai_chat()),
        (ANTHROPIC_PAIR, "anthropic", anthropic_messages()),
        (CROSS_PAIR, "anthropic", anthropic_messages()),
        (OPENAI_TO_ANTHROPIC, "openai", openai_chat()),
    ],
    ids=["openai", "anthropic", "anthropic-to-openai", "openai-to-anthropic"],
)
async def test_proxy_fails_over_on_429_and_answers_byte_for_byte_as_http(
    config: str, dialect: str, body: bytes
) -> None:
    def upstreams() -> Upstreams:
        return Upstreams(primary=rate_limit("30"))

    status, headers, http_body = await _http(config, upstreams, dialect, body)
    random.seed(5)
    async with grpc_detour(config, upstreams()) as detour:
        request = gateway_pb2.ProxyRequest(dialect=dialect, body=body)
        response = await detour.gateway.Proxy(request, metadata=_metadata(dialect), timeout=CALL_TIMEOUT_S)
        assert detour.upstreams.order == ["primary", "backup"]

    assert (response.status, _same(response.body)) == (status, _same(http_body))
    assert (response.served.provider, response.served.attempts) == ("backup", 2)
    assert response.served.model == headers["x-detour-model"]
    for name in ("x-detour-provider", "x-detour-model", "x-detour-attempts", "content-type"):
        assert response.headers[name] == headers[name]
    request_id = "request-id" if "request-id" in headers else "x-request-id"  # the provider's, passed on
    assert response.headers[request_id] == headers[request_id]


@pytest.mark.parametrize(
    ("config", "dialect", "body"),
    [
        (OPENAI_PAIR, "openai", openai_chat(stream=True)),
        (ANTHROPIC_PAIR, "anthropic", anthropic_messages(stream=True)),
        (CROSS_PAIR, "anthropic", anthropic_messages(stream=True)),
        (OPENAI_TO_ANTHROPIC, "openai", openai_chat(stream=True)),
    ],
    ids=["openai", "anthropic", "anthropic-to-openai", "openai-to-anthropic"],
)
async def test_proxy_stream_sends_the_http_sse_bytes_with_served_on_the_first_chunk(
    config: str, dialect: str, body: bytes
) -> None:
    def upstreams() -> Upstreams:
        return Upstreams(primary=rate_limit("30"))

    status, headers, http_body = await _http(config, upstreams, dialect, body)
    random.seed(5)
    async with grpc_detour(config, upstreams()) as detour:
        request = gateway_pb2.ProxyRequest(dialect=dialect, body=body)
        chunks = await collect(detour.gateway.ProxyStream(request, metadata=_metadata(dialect)))

    assert _same(b"".join(chunk.data for chunk in chunks)) == _same(http_body)
    first, rest = chunks[0], chunks[1:]
    assert (first.served.provider, first.served.attempts, first.status) == ("backup", 2, status)
    assert first.headers["x-detour-provider"] == headers["x-detour-provider"] == "backup"
    assert first.headers["content-type"] == headers["content-type"]
    assert all(not chunk.HasField("served") and chunk.status == 0 for chunk in rest)


async def test_proxy_returns_any_http_answer_in_status_and_body_with_grpc_ok() -> None:
    invalid = error(400, "invalid_request_error", "Invalid 'messages[0].content': too long.")
    upstreams = Upstreams(primary=invalid)
    config = pair(openai_at("primary"), openai_at("backup"))
    async with grpc_detour(config, upstreams) as detour:
        provider_error = await detour.gateway.Proxy(
            gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat()), metadata=OPENAI_KEY
        )
        upstreams["primary"] = rate_limit("30")
        upstreams["backup"] = rate_limit("60")
        limited = await detour.gateway.Proxy(gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat()))
        bad_json = await detour.gateway.Proxy(gateway_pb2.ProxyRequest(dialect="anthropic", body=b"{"))
        limited_stream = await collect(
            detour.gateway.ProxyStream(
                gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
            )
        )

    assert provider_error.status == 400
    assert orjson.loads(provider_error.body)["error"]["message"] == "Invalid 'messages[0].content': too long."
    assert provider_error.served.provider == "primary"
    assert limited.status == 429
    assert not limited.HasField("served")
    assert orjson.loads(limited.body)["error"]["code"] == "rate_limit_exceeded"
    assert (limited.headers["retry-after"], limited.headers["x-detour-attempts"]) == ("30", "2")
    assert bad_json.status == 400
    assert orjson.loads(bad_json.body)["type"] == "error"
    [chunk] = limited_stream
    assert (chunk.status, chunk.headers["retry-after"]) == (429, "30")
    assert orjson.loads(chunk.data)["error"]["type"] == "rate_limit_exceeded"


async def test_a_stream_cut_after_its_first_chunk_ends_unavailable_never_ok() -> None:
    upstreams = Upstreams(primary=streamed("one two three four", keep=3, then=[connection_reset()]))
    config = pair(openai_at("primary"), openai_at("backup"))
    async with grpc_detour(config, upstreams) as detour:
        request = gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
        call = detour.gateway.ProxyStream(request, timeout=CALL_TIMEOUT_S)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for chunk in call:
                received.append(chunk.data)
        whole = await rpc_error(detour.gateway.Proxy(request, timeout=CALL_TIMEOUT_S))

    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "the provider's stream broke" in raised.value.details()
    assert b"one" in received[0], "what the client already had arrived first"
    assert b'"error"' in received[-1], "the in-band error the HTTP API sends, then the status"
    assert whole.code() is grpc.StatusCode.UNAVAILABLE, "the unary call never returns a truncated 200"


async def test_proxy_of_a_stream_body_returns_the_whole_sse_body() -> None:
    async with grpc_detour(pair(openai_at("primary"), openai_at("backup")), Upstreams()) as detour:
        request = gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
        response = await detour.gateway.Proxy(request, timeout=CALL_TIMEOUT_S)
        whole = await collect(
            detour.gateway.ProxyStream(gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat()))
        )

    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.body.endswith(b"data: [DONE]\n\n")
    assert response.body.count(b"data: ") > 3
    [chunk] = whole  # a body without "stream": true through ProxyStream: one chunk, the JSON answer
    assert (chunk.status, chunk.served.provider) == (200, "primary")
    assert orjson.loads(chunk.data)["object"] == "chat.completion"


async def test_the_clients_credential_is_read_from_metadata_or_request_headers_as_over_http() -> None:
    config = pair(openai_at("primary"), anthropic_at("backup", api_key="sk-ant-backup"))
    upstreams = Upstreams()
    async with grpc_detour(config, upstreams) as detour:
        body = openai_chat()
        await detour.gateway.Proxy(gateway_pb2.ProxyRequest(dialect="openai", body=body), metadata=OPENAI_KEY)
        in_body = gateway_pb2.ProxyRequest(
            dialect="openai", body=body, headers={"Authorization": "Bearer sk-own"}
        )
        await detour.gateway.Proxy(in_body, metadata=OPENAI_KEY)
        upstreams["primary"] = rate_limit("30")
        await detour.gateway.Proxy(gateway_pb2.ProxyRequest(dialect="openai", body=body), metadata=OPENAI_KEY)

    first, second, _ = (headers_of(request) for request in upstreams.to("primary"))
    assert first["authorization"] == "Bearer sk-client"
    assert second["authorization"] == "Bearer sk-own", "the request's own header wins, and only one is sent"
    [backup] = [headers_of(request) for request in upstreams.to("backup")]
    assert backup["x-api-key"] == "sk-ant-backup"
    assert "authorization" not in backup, "a client's credential never crosses dialects"


async def test_an_unknown_dialect_is_invalid_argument() -> None:
    async with grpc_detour(pair(openai_at("primary"), openai_at("backup")), Upstreams()) as detour:
        failed = await rpc_error(detour.gateway.Proxy(gateway_pb2.ProxyRequest(dialect="gemini", body=b"{}")))
        failed_stream = await rpc_error(
            detour.gateway.ProxyStream(gateway_pb2.ProxyRequest(dialect="", body=b"{}"))
        )

    assert failed.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "dialect must be 'openai' or 'anthropic'" in failed.details()
    assert failed_stream.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_proxy_of_a_stream_body_is_held_to_the_providers_cap_on_a_whole_answer() -> None:
    config = pair(openai_at("primary", max_response_bytes=600), openai_at("backup"))
    async with grpc_detour(config, Upstreams(primary=streamed("word " * 200))) as detour:
        request = gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
        failed = await rpc_error(detour.gateway.Proxy(request, timeout=CALL_TIMEOUT_S))
        streamed_in_full = await collect(detour.gateway.ProxyStream(request, timeout=CALL_TIMEOUT_S))

    assert failed.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than 600 bytes: use ProxyStream" in failed.details()
    assert streamed_in_full[-1].data.endswith(b"data: [DONE]\n\n"), "a stream has no such cap"


async def test_a_body_over_the_cap_is_a_413_as_over_http_and_a_message_far_over_it_is_refused() -> None:
    async with grpc_detour(OPENAI_PAIR, Upstreams(), max_body_bytes=100) as detour:
        over = openai_chat(padding="x" * 100)
        answered = await detour.gateway.Proxy(gateway_pb2.ProxyRequest(dialect="openai", body=over))
        huge = gateway_pb2.ProxyRequest(dialect="openai", body=b"x" * (100 + 128 * 1024))
        refused = await rpc_error(detour.gateway.Proxy(huge, timeout=CALL_TIMEOUT_S))

    assert answered.status == 413
    assert orjson.loads(answered.body)["error"]["message"] == "the request body is larger than 100 bytes"
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, "grpc's own cap on the message"
    assert detour.upstreams.log == [], "nothing was sent upstream"
