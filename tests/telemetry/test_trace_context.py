"""Sampling keeps the trace context flowing and the metrics complete; failures are marked on the
right spans; the client's trace context is never forwarded raw; a telemetry bug never reaches the
request."""

from __future__ import annotations

import logging

import httpx
import pytest

from sidecar.simulate import RateLimit, ServerError, SimulatedProvider
from sidecar.telemetry.hooks import _guarded
from tests.support.running import config_text, limits_alternative_rule, pair_config, provider, running_sidecar
from tests.telemetry.receivers import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    OtlpGrpcReceiver,
    only_point,
    only_span,
)
from tests.telemetry.traced import (
    AUTH,
    CHAT,
    CLIENT_TRACE_ID,
    QUIET,
    TRACEPARENT,
    traced_sidecar,
)


async def test_a_sampled_out_request_exports_no_span_but_still_propagates_and_counts() -> None:
    with OtlpGrpcReceiver() as receiver:
        env = {
            **QUIET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": "always_off",
        }
        async with (
            SimulatedProvider("openai", name="primary") as primary,
            SimulatedProvider("openai", name="backup") as backup,
        ):
            primary.script(RateLimit(retry_after="5"))
            async with (
                traced_sidecar(pair_config(primary, backup), env) as detour,
                httpx.AsyncClient() as c,
            ):
                headers = {**AUTH, "traceparent": TRACEPARENT}
                response = await c.post(detour.url + "/v1/chat/completions", json=CHAT, headers=headers)
                await detour.flush()

    assert response.status_code == 200
    assert receiver.received.spans() == []
    version, trace_id, span_id, flags = backup.requests[0].headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE_ID, "00"), "same trace, marked not sampled"
    assert len(span_id) == 16
    points = receiver.received.points()
    assert only_point(points, "detour.rate_limit.events").value == 1
    assert only_point(points, "detour.failovers").value == 1


async def test_without_a_client_trace_each_request_starts_its_own() -> None:
    with OtlpGrpcReceiver() as receiver:
        env = {
            **QUIET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        async with (
            SimulatedProvider("openai", name="primary") as primary,
            SimulatedProvider("openai", name="backup") as backup,
        ):
            async with (
                traced_sidecar(pair_config(primary, backup), env) as detour,
                httpx.AsyncClient() as c,
            ):
                for _ in range(2):
                    await c.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
                await detour.flush()

    spans = receiver.received.spans()
    assert len(spans) == 4
    assert len({span.trace_id for span in spans}) == 2
    assert [span.parent_span_id for span in spans if span.kind == SPAN_KIND_SERVER] == ["", ""]
    sent = [request.headers["traceparent"].split("-")[1] for request in primary.requests]
    assert set(sent) == {span.trace_id for span in spans}


def test_a_failing_hook_logs_once_and_returns_none(caplog: pytest.LogCaptureFixture) -> None:
    @_guarded
    def broken() -> str:
        raise ValueError("a telemetry bug")

    with caplog.at_level(logging.ERROR, logger="detour.telemetry"):
        assert broken() is None
        assert broken() is None
    assert [record.getMessage() for record in caplog.records] == [
        "telemetry hook broken failed; the request goes on"
    ]


async def test_without_telemetry_the_clients_trace_context_is_not_forwarded() -> None:
    async with SimulatedProvider("openai", name="gpt") as gpt:
        text = config_text({"gpt": provider("openai", gpt.base_url)}, [limits_alternative_rule(["gpt"])])
        async with running_sidecar(text) as detour, httpx.AsyncClient() as client:
            headers = {**AUTH, "traceparent": TRACEPARENT, "tracestate": "vendor=1"}
            response = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=headers)

    assert response.status_code == 200
    assert "traceparent" not in gpt.requests[0].headers
    assert "tracestate" not in gpt.requests[0].headers
    assert detour.sidecar.router.tracing is None


async def test_a_retried_5xx_is_two_failed_attempts_under_a_failed_server_span() -> None:
    with OtlpGrpcReceiver() as receiver:
        env = {
            **QUIET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        async with SimulatedProvider("openai", name="gpt") as gpt:
            gpt.script(ServerError(), ServerError())
            text = config_text(
                {"gpt": provider("openai", gpt.base_url, retry_backoff_ms=1)},
                [limits_alternative_rule(["gpt"])],
            )
            async with traced_sidecar(text, env) as detour, httpx.AsyncClient() as client:
                response = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
                await detour.flush()

    assert response.status_code == 502
    spans = receiver.received.spans()
    server = only_span(spans, SPAN_KIND_SERVER)
    assert (server.status_code, server.attributes["error.type"]) == (STATUS_ERROR, "502")
    attempts = [span for span in spans if span.kind == SPAN_KIND_CLIENT]
    assert [(span.attributes["error.type"], span.status_code) for span in attempts] == [
        ("500", STATUS_ERROR)
    ] * 2
    assert len({request.headers["traceparent"] for request in gpt.requests}) == 2, "one context per attempt"
    points = receiver.received.points()
    assert only_point(points, "gen_ai.client.operation.duration", **{"error.type": "500"}).count == 2
