"""The server's life (`GrpcServer.serve`: start, serve until cancelled, stop gracefully) and the
failures nobody planned for: a bug while routing is INTERNAL for the typed chat and the HTTP API's
500 for the proxy, and a call goes on when its span cannot be started."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.ingress.grpc._generated import gateway_pb2, gateway_pb2_grpc
from sidecar.ingress.grpc.server import build_grpc_server
from sidecar.routing.exchange import InboundRequest
from tests.grpc.support import (
    CALL_TIMEOUT_S,
    Hanging,
    collect,
    grpc_detour,
    openai_chat,
    pair,
    rpc_error,
    text_request,
)
from tests.support.memory_transport import Upstreams, error, openai_at

CONFIG = pair(openai_at("primary"), openai_at("backup"))


async def test_serve_runs_until_cancelled_then_stops_gracefully() -> None:
    hanging = Hanging()
    upstreams = Upstreams(primary=hanging)
    sidecar = Sidecar(load_config_text(CONFIG, source="test", env={}), transport_factory=upstreams.factory)
    server = build_grpc_server(sidecar, "127.0.0.1", 0)
    assert server.address == f"127.0.0.1:{server.port}"
    serving = asyncio.create_task(server.serve(grace_s=0.2))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            before = await health.Check(request, wait_for_ready=True, timeout=CALL_TIMEOUT_S)
            in_flight = gateway_pb2_grpc.GatewayStub(channel).Chat(text_request(), timeout=CALL_TIMEOUT_S)
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await hanging.started.wait()
                serving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await serving
                await hanging.cancelled.wait()  # the grace is over: the call was cut, its upstream too
            cut = await rpc_error(in_flight)
            after = await rpc_error(health.Check(request, timeout=CALL_TIMEOUT_S))
    finally:
        await sidecar.aclose()

    assert before.status == health_pb2.HealthCheckResponse.SERVING
    assert cut.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert after.code() is grpc.StatusCode.UNAVAILABLE, "stopped: nothing listens any more"


async def test_stop_ends_serve() -> None:
    sidecar = Sidecar()
    server = build_grpc_server(sidecar, "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=CALL_TIMEOUT_S)
        await server.stop(0)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await serving


class _Broken(Exception):
    pass


async def _broken_route(request: InboundRequest, trace: Any = None) -> Any:
    raise _Broken("a bug")


async def test_a_bug_while_routing_is_internal_for_chat_and_a_500_for_the_proxy(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with grpc_detour(CONFIG, Upstreams()) as detour:
        monkeypatch.setattr(detour.sidecar.router, "route", _broken_route)
        chat = await rpc_error(detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S))
        proxied = await detour.gateway.Proxy(
            gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat()), timeout=CALL_TIMEOUT_S
        )

    assert chat.code() is grpc.StatusCode.INTERNAL
    assert chat.details() == "internal error in the sidecar", "never the exception's text"
    assert proxied.status == 500
    assert orjson.loads(proxied.body)["error"]["message"] == "internal error in the sidecar"
    assert "a bug" in caplog.text, "logged, with its traceback"


async def test_a_providers_4xx_ends_a_chat_stream_with_its_code() -> None:
    upstreams = Upstreams(primary=error(401, "authentication_error", "Incorrect API key provided"))
    async with grpc_detour(CONFIG, upstreams) as detour:
        failed = await rpc_error(detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S))
        proxied = await collect(
            detour.gateway.ProxyStream(
                gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
            )
        )

    assert failed.code() is grpc.StatusCode.UNAUTHENTICATED
    assert failed.details() == "Incorrect API key provided"
    [chunk] = proxied  # the proxy passes the answer on, as over HTTP
    assert (chunk.status, chunk.served.provider) == (401, "primary")
