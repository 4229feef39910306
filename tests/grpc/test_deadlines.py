"""The client's deadline bounds the upstream attempts, and a call the client cancels cancels its
upstream request at once: the upstream sees its request cancelled, or its stream closed."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sidecar.ingress.grpc._generated import gateway_pb2
from tests.grpc.support import (
    CALL_TIMEOUT_S,
    Hanging,
    WatchedStream,
    grpc_detour,
    openai_chat,
    pair,
    rpc_error,
    text_request,
)
from tests.support.memory_transport import Stall, Upstreams, anthropic_at, openai_at

OPENAI = pair(openai_at("primary"), openai_at("backup"))


@pytest.mark.parametrize("method", ["Chat", "Proxy"])
async def test_the_deadline_bounds_the_upstream_attempt(method: str) -> None:
    hanging = Hanging()
    upstreams = Upstreams(primary=hanging)
    async with grpc_detour(OPENAI, upstreams) as detour:
        if method == "Chat":
            call = detour.gateway.Chat(text_request(), timeout=0.3)
        else:
            call = detour.gateway.Proxy(
                gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat()), timeout=0.3
            )
        failed = await rpc_error(call)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await hanging.cancelled.wait()

    assert failed.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert upstreams.order == ["primary"], "no attempt after the deadline"


async def test_a_cancelled_chat_cancels_its_upstream_request_at_once() -> None:
    hanging = Hanging()
    async with grpc_detour(OPENAI, Upstreams(primary=hanging)) as detour:
        call = detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await hanging.started.wait()
            call.cancel()
            await hanging.cancelled.wait()

    assert call.cancelled()


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_cancelled_chat_stream_closes_its_upstream_stream(dialect: str) -> None:
    stall = Stall()
    stream = WatchedStream(keep=4, then=[stall])
    at = openai_at if dialect == "openai" else anthropic_at
    async with grpc_detour(pair(at("primary"), at("backup")), Upstreams(primary=stream)) as detour:
        call = detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            first = await call.read()
            await stall.reached.wait()
            call.cancel()
            await stream.bodies[0].closed_event.wait()

    assert first.served.provider == "primary"
    assert not stall.go.is_set(), "closed while the provider was still streaming"


async def test_a_cancelled_proxy_stream_closes_its_upstream_stream() -> None:
    stall = Stall()
    stream = WatchedStream(keep=4, then=[stall])
    async with grpc_detour(OPENAI, Upstreams(primary=stream)) as detour:
        request = gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
        call = detour.gateway.ProxyStream(request, timeout=CALL_TIMEOUT_S)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await call.read()
            await stall.reached.wait()
            call.cancel()
            await stream.bodies[0].closed_event.wait()


async def test_a_deadline_passing_mid_stream_closes_the_upstream_stream() -> None:
    stall = Stall()
    stream = WatchedStream(keep=4, then=[stall])
    async with grpc_detour(OPENAI, Upstreams(primary=stream)) as detour:
        call = detour.gateway.ChatStream(text_request(), timeout=0.5)
        failed = await rpc_error(call)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await stream.bodies[0].closed_event.wait()

    assert failed.code() is grpc.StatusCode.DEADLINE_EXCEEDED
