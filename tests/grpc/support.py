"""A real `grpc.aio` server (`build_grpc_server`) on 127.0.0.1 and a port of its own, with the
generated client stubs over a real channel, in front of the in-memory upstreams of
`tests/support/memory_transport.py` (faithful OpenAI / Anthropic answers, a fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import orjson
from grpc_health.v1 import health_pb2_grpc
from grpc_status import rpc_status

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.ingress.grpc._generated import admin_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from sidecar.ingress.grpc.server import GrpcServer, build_grpc_server
from sidecar.providers.http import UpstreamRequest
from sidecar.telemetry.runtime import Telemetry
from tests.support.memory_transport import Part, ScriptedBody, Upstreams, stream_frames
from tests.support.running import FakeClock, config_text, limits_alternative_rule

CALL_TIMEOUT_S = 5.0  # every call is bounded: a hang fails its test in seconds
OPENAI_KEY = (("authorization", "Bearer sk-client"),)
ANTHROPIC_KEY = (("x-api-key", "sk-ant-client"),)


@dataclass
class GrpcDetour:
    sidecar: Sidecar
    server: GrpcServer
    channel: Any  # grpc.aio.Channel
    gateway: gateway_pb2_grpc.GatewayStub
    admin: admin_pb2_grpc.AdminStub
    health: health_pb2_grpc.HealthStub
    upstreams: Upstreams
    clock: FakeClock


@contextlib.asynccontextmanager
async def grpc_detour(
    config: str | None,
    upstreams: Upstreams,
    *,
    clock: FakeClock | None = None,
    telemetry: Telemetry | None = None,
    check_closed: bool = True,
    **server_options: Any,
) -> AsyncIterator[GrpcDetour]:
    """A `Sidecar` (with `config`, or none yet) served over gRPC; on exit, every upstream response
    the router opened must have been closed again."""
    clock = clock or FakeClock()
    loaded = load_config_text(config, source="test", env={}) if config is not None else None
    sidecar = Sidecar(
        loaded,
        clock=clock.as_clock(),
        rng=random.Random(7),
        transport_factory=upstreams.factory,
        telemetry=telemetry,
    )
    server = build_grpc_server(sidecar, "127.0.0.1", 0, **server_options)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield GrpcDetour(
                sidecar,
                server,
                channel,
                gateway_pb2_grpc.GatewayStub(channel),
                admin_pb2_grpc.AdminStub(channel),
                health_pb2_grpc.HealthStub(channel),
                upstreams,
                clock,
            )
        if check_closed:
            assert upstreams.unclosed == [], "every upstream response is closed (its connection released)"
    finally:
        await server.stop(0)
        await sidecar.aclose()


def pair(primary: dict[str, Any], backup: dict[str, Any], **strategy: Any) -> str:
    """`primary` → `backup` under one limits-alternative rule for every model."""
    providers = {"primary": primary, "backup": backup}
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"], **strategy)])


def openai_chat(model: str = "gpt-4o", **fields: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "Hello"}], **fields})


def anthropic_messages(model: str = "claude-sonnet-4-5", **fields: Any) -> bytes:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}
    return orjson.dumps({**body, **fields})


def text_request(model: str = "gpt-4o", text: str = "Hello", **fields: Any) -> gateway_pb2.ChatRequest:
    message = gateway_pb2.Message(role="user", parts=[gateway_pb2.Part(text=text)])
    return gateway_pb2.ChatRequest(model=model, messages=[message], **fields)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with (awaiting a unary call, or reading a stream to its end)."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            if hasattr(call, "read"):
                async for _ in call:
                    pass
            else:
                await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call ended OK")


async def details_of(call: Any) -> Any:
    """The google.rpc.Status the server attached (grpcio-status), or None."""
    return await rpc_status.aio.from_call(call)


async def collect(call: Any) -> list[Any]:
    async with asyncio.timeout(CALL_TIMEOUT_S):
        return [message async for message in call]


# --- upstreams that report being closed or cancelled ----------------------------------------------


class WatchedBody(ScriptedBody):
    """A scripted body that tells the test when the router closed it (the connection released)."""

    def __init__(self, parts: Iterable[Part]) -> None:
        super().__init__(parts)
        self.closed_event = asyncio.Event()

    async def aclose(self) -> None:
        await super().aclose()
        self.closed_event.set()


class WatchedStream:
    """A handler answering the request's stream with its first `keep` frames, then `then`; each
    body it played is kept, so a test can await its closing."""

    def __init__(self, keep: int, then: Sequence[Part] = ()) -> None:
        self.keep = keep
        self.then = list(then)
        self.bodies: list[WatchedBody] = []

    def __call__(self, request: UpstreamRequest) -> httpx.Response:
        body = WatchedBody([*stream_frames(request)[: self.keep], *self.then])
        self.bodies.append(body)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)


class Hanging:
    """A provider that accepts the request and never answers; `cancelled` is set when the router
    gives the request up (the upstream call is cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self, request: UpstreamRequest) -> httpx.Response:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")
