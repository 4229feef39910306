"""A SERVER span per Gateway call with the OpenTelemetry RPC attributes, the call's upstream attempts
as its CLIENT children exactly as over HTTP, and the client's trace context from the metadata."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sidecar.ingress.grpc._generated import gateway_pb2
from sidecar.telemetry import TelemetrySettings
from sidecar.telemetry.runtime import Telemetry, start_telemetry
from sidecar.telemetry.spans import SpanStarter
from tests.grpc.support import (
    CALL_TIMEOUT_S,
    collect,
    grpc_detour,
    openai_chat,
    pair,
    rpc_error,
    text_request,
)
from tests.support.memory_transport import Upstreams, connection_reset, openai_at, rate_limit, reply, streamed

CONFIG = pair(openai_at("primary"), openai_at("backup"))
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@contextlib.asynccontextmanager
async def _traced() -> AsyncIterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = start_telemetry(TelemetrySettings.from_env({}), span_exporters=[exporter])
    assert telemetry is not None
    try:
        yield telemetry, exporter
    finally:
        await asyncio.to_thread(telemetry.shutdown)


async def _spans(telemetry: Telemetry, exporter: InMemorySpanExporter, count: int) -> list[Any]:
    """The finished spans once `count` have arrived: a call's span ends just after its last
    message left, so the client can be done a moment before it exists."""
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while True:
            assert await asyncio.to_thread(telemetry.force_flush, 5_000)
            spans = list(exporter.get_finished_spans())
            if len(spans) >= count:
                return spans
            await asyncio.sleep(0.005)


async def test_a_call_gets_a_server_span_with_rpc_attributes_and_its_attempts_as_children() -> None:
    async with _traced() as (telemetry, exporter):
        upstreams = Upstreams(primary=rate_limit("30"))
        async with grpc_detour(CONFIG, upstreams, telemetry=telemetry) as detour:
            metadata = (
                ("traceparent", TRACEPARENT),
                ("tracestate", "vendor=1"),
                ("authorization", "Bearer sk-secret-123"),
            )
            await detour.gateway.Chat(text_request(), metadata=metadata, timeout=CALL_TIMEOUT_S)
            spans = await _spans(telemetry, exporter, 3)

    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    attempts = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert server.name == "detour.v1.Gateway/Chat"
    assert {key: server.attributes[key] for key in ("rpc.system", "rpc.service", "rpc.method")} == {
        "rpc.system": "grpc", "rpc.service": "detour.v1.Gateway", "rpc.method": "Chat",
    }  # fmt: skip
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert (server.attributes["detour.provider"], server.attributes["detour.attempts"]) == ("backup", 2)
    assert server.attributes["gen_ai.request.model"] == "gpt-4o"
    assert format(server.context.trace_id, "032x") == TRACE_ID, "the client's trace continues"
    assert server.context.trace_state.to_header() == "vendor=1"
    assert [span.name for span in attempts] == ["chat gpt-4o", "chat gpt-4o"]
    assert all(span.parent.span_id == server.context.span_id for span in attempts)
    assert [event.name for event in server.events] == ["detour.failover"]
    assert "sk-secret-123" not in repr([dict(span.attributes) for span in spans])


async def test_a_broken_stream_span_ends_unavailable_and_a_client_error_is_not_the_servers() -> None:
    async with _traced() as (telemetry, exporter):
        cut = streamed("one two three four", keep=4, then=[connection_reset()])
        upstreams = Upstreams(primary=cut)
        async with grpc_detour(CONFIG, upstreams, telemetry=telemetry) as detour:
            broken = await rpc_error(detour.gateway.ChatStream(text_request(), timeout=CALL_TIMEOUT_S))
            missing = await rpc_error(detour.gateway.Chat(gateway_pb2.ChatRequest(), timeout=CALL_TIMEOUT_S))
            upstreams["primary"] = reply()
            request = gateway_pb2.ProxyRequest(dialect="openai", body=openai_chat(stream=True))
            await collect(detour.gateway.ProxyStream(request, timeout=CALL_TIMEOUT_S))
            spans = await _spans(telemetry, exporter, 5)

    servers = {span.attributes["rpc.method"]: span for span in spans if span.kind is SpanKind.SERVER}
    assert broken.code() is grpc.StatusCode.UNAVAILABLE
    stream = servers["ChatStream"]
    assert (stream.attributes["rpc.grpc.status_code"], stream.attributes["error.type"]) == (14, "UNAVAILABLE")
    assert stream.status.status_code is StatusCode.ERROR
    assert missing.code() is grpc.StatusCode.INVALID_ARGUMENT
    chat = servers["Chat"]
    assert chat.attributes["rpc.grpc.status_code"] == 3
    assert chat.status.status_code is StatusCode.UNSET
    assert servers["ProxyStream"].attributes["rpc.grpc.status_code"] == 0


async def test_a_span_that_cannot_start_never_stops_the_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: Any) -> Any:
        raise RuntimeError("exporter trouble")

    monkeypatch.setattr(SpanStarter, "start", refuse)
    async with _traced() as (telemetry, _):
        async with grpc_detour(CONFIG, Upstreams(), telemetry=telemetry) as detour:
            response = await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)

    assert response.served.provider == "primary"
    assert "could not start the server span" in caplog.text
