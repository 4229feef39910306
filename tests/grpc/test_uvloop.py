"""`detour serve` runs uvloop (`sidecar/cli/main.py`): grpc.aio must work on it exactly as on the
default loop — unary and streamed calls, a failover, a cancellation reaching the upstream, and a
deadline — next to the HTTP server on the same loop."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
import uvloop

from sidecar.ingress.grpc._generated import gateway_pb2
from sidecar.ingress.grpc.server import build_grpc_server
from tests.grpc.support import (
    CALL_TIMEOUT_S,
    OPENAI_KEY,
    Hanging,
    WatchedStream,
    collect,
    grpc_detour,
    openai_chat,
    pair,
    rpc_error,
    text_request,
)
from tests.support.memory_transport import Stall, Upstreams, openai_at, rate_limit
from tests.support.running import serve_sidecar


async def _scenario() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    stall, hanging = Stall(), Hanging()
    stream = WatchedStream(keep=4, then=[stall])
    upstreams = Upstreams(primary=rate_limit("30"))
    async with grpc_detour(pair(openai_at("primary"), openai_at("backup")), upstreams) as detour:
        request = gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat())
        proxied = await detour.gateway.Proxy(request, metadata=OPENAI_KEY, timeout=CALL_TIMEOUT_S)
        assert (proxied.status, proxied.served.provider) == (200, "backup")
        streamed = await collect(detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S))
        assert "".join(chunk.text_delta for chunk in streamed) == "Hello there."
        async with serve_sidecar(detour.sidecar) as url, httpx.AsyncClient() as http:  # HTTP on the same loop
            answer = await http.post(
                url + "/v1/chat/completions", content=openai_chat(), headers=dict(OPENAI_KEY)
            )
            assert answer.headers["x-detour-provider"] == "backup"
            detour.sidecar.router.clear_limit("primary")
            upstreams["primary"] = stream
            call = detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S)
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await call.read()
                await stall.reached.wait()
                call.cancel()
                await stream.bodies[0].closed_event.wait()
        upstreams["primary"] = hanging
        late = await rpc_error(detour.gateway.Chat(text_request(), timeout=0.3))
        assert late.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await hanging.cancelled.wait()


def test_grpc_aio_serves_on_uvloop_next_to_http() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_scenario())


async def test_a_port_another_grpc_server_holds_is_an_os_error_not_a_shared_port() -> None:
    """grpc sets SO_REUSEPORT unless told not to: two sidecars would then share a port silently."""
    async with grpc_detour(None, Upstreams()) as detour:
        with pytest.raises(OSError, match="could not listen"):
            build_grpc_server(detour.sidecar, "127.0.0.1", detour.server.port)
