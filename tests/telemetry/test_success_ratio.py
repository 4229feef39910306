"""DETOUR_TRACES_SUCCESS_RATIO: plain successes are sampled, the evidence of a limit never is."""

from __future__ import annotations

import logging

import httpx
import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from sidecar.simulate import RateLimit, ServerError, SimulatedProvider
from sidecar.telemetry.sampling import KeepEvidence
from sidecar.telemetry.settings import TelemetrySettings
from tests.support.running import config_text, limits_alternative_rule, pair_config, provider
from tests.telemetry.receivers import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    OtlpGrpcReceiver,
    only_point,
    only_span,
)
from tests.telemetry.traced import AUTH, CHAT, CLIENT_TRACE_ID, QUIET, TRACEPARENT, traced_sidecar

URL = "/v1/chat/completions"


def env_for(receiver: OtlpGrpcReceiver, ratio: str) -> dict[str, str]:
    return {
        **QUIET,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "DETOUR_TRACES_SUCCESS_RATIO": ratio,
    }


def sampled(traceparent: str) -> bool:
    return bool(int(traceparent.split("-")[3], 16) & 1)


async def test_plain_successes_are_left_out_but_counted_and_a_clients_sampled_trace_is_kept() -> None:
    with OtlpGrpcReceiver() as receiver:
        async with SimulatedProvider("openai", name="gpt") as gpt:
            text = config_text({"gpt": provider("openai", gpt.base_url)}, [limits_alternative_rule(["gpt"])])
            async with traced_sidecar(text, env_for(receiver, "0")) as detour, httpx.AsyncClient() as client:
                plain = await client.post(detour.url + URL, json=CHAT, headers=AUTH)
                await detour.flush()
                assert receiver.received.spans() == [], "a plain success at ratio 0 exports no span"
                traced = await client.post(
                    detour.url + URL, json=CHAT, headers={**AUTH, "traceparent": TRACEPARENT}
                )
                await detour.flush()

    assert (plain.status_code, traced.status_code) == (200, 200)
    assert not sampled(gpt.requests[0].headers["traceparent"]), "upstream told: not sampled"
    assert sampled(gpt.requests[1].headers["traceparent"])
    spans = receiver.received.spans()
    assert {span.trace_id for span in spans} == {CLIENT_TRACE_ID}, "only the client's sampled trace"
    assert {span.kind for span in spans} == {SPAN_KIND_SERVER, SPAN_KIND_CLIENT}
    points = receiver.received.points()
    assert only_point(points, "gen_ai.client.operation.duration").count == 2, "both requests measured"


async def test_a_rate_limit_and_its_failover_are_always_exported() -> None:
    with OtlpGrpcReceiver() as receiver:
        async with (
            SimulatedProvider("openai", name="primary") as primary,
            SimulatedProvider("openai", name="backup") as backup,
        ):
            primary.script(RateLimit(retry_after="5"))
            async with (
                traced_sidecar(pair_config(primary, backup), env_for(receiver, "0")) as detour,
                httpx.AsyncClient() as client,
            ):
                response = await client.post(detour.url + URL, json=CHAT, headers=AUTH)
                await detour.flush()

    assert response.status_code == 200
    spans = receiver.received.spans()
    server = only_span(spans, SPAN_KIND_SERVER)
    assert [name for name, _ in server.events] == ["detour.failover"]
    attempts = [span for span in spans if span.kind == SPAN_KIND_CLIENT]
    assert [span.attributes["detour.provider"] for span in attempts] == ["primary", "backup"]
    assert [name for name, _ in attempts[0].events] == ["detour.rate_limited"]
    assert {span.trace_id for span in spans} == {server.trace_id}
    assert all(span.parent_span_id == server.span_id for span in attempts)
    assert not sampled(primary.requests[0].headers["traceparent"]), "the head decision went upstream"


async def test_a_retried_error_is_exported() -> None:
    with OtlpGrpcReceiver() as receiver:
        async with SimulatedProvider("openai", name="gpt") as gpt:
            gpt.script(ServerError(), ServerError())
            text = config_text(
                {"gpt": provider("openai", gpt.base_url, retry_backoff_ms=1)},
                [limits_alternative_rule(["gpt"])],
            )
            async with traced_sidecar(text, env_for(receiver, "0")) as detour, httpx.AsyncClient() as client:
                response = await client.post(detour.url + URL, json=CHAT, headers=AUTH)
                await detour.flush()

    assert response.status_code == 502
    spans = receiver.received.spans()
    assert only_span(spans, SPAN_KIND_SERVER).attributes["error.type"] == "502"
    assert len([span for span in spans if span.kind == SPAN_KIND_CLIENT]) == 2


async def test_at_a_ratio_the_kept_plain_successes_are_those_the_trace_id_rule_picks() -> None:
    bound = TraceIdRatioBased.get_bound_for_rate(0.5)
    with OtlpGrpcReceiver() as receiver:
        async with SimulatedProvider("openai", name="gpt") as gpt:
            text = config_text({"gpt": provider("openai", gpt.base_url)}, [limits_alternative_rule(["gpt"])])
            async with (
                traced_sidecar(text, env_for(receiver, "0.5")) as detour,
                httpx.AsyncClient() as client,
            ):
                for _ in range(24):
                    assert (await client.post(detour.url + URL, json=CHAT, headers=AUTH)).status_code == 200
                await detour.flush()

    picked = set()
    for request in gpt.requests:
        trace_id = request.headers["traceparent"].split("-")[1]
        kept = sampled(request.headers["traceparent"])
        assert kept == (int(trace_id, 16) & TraceIdRatioBased.TRACE_ID_LIMIT < bound)
        if kept:
            picked.add(trace_id)
    assert 0 < len(picked) < 24, "24 random trace ids all on one side of 0.5: the rule is not applied"
    exported = {span.trace_id for span in receiver.received.spans() if span.kind == SPAN_KIND_SERVER}
    assert exported == picked


def test_the_sampler_records_everything_and_samples_by_parent_then_ratio() -> None:
    sampler = KeepEvidence(0.0)
    assert sampler.should_sample(None, 1, "x").decision is Decision.RECORD_ONLY
    assert KeepEvidence(1.0).should_sample(None, 1, "x").decision is Decision.RECORD_AND_SAMPLE

    def parent(flags: int) -> Context:
        return set_span_in_context(NonRecordingSpan(SpanContext(7, 8, True, TraceFlags(flags))))

    assert sampler.should_sample(parent(1), 7, "x").decision is Decision.RECORD_AND_SAMPLE
    assert KeepEvidence(1.0).should_sample(parent(0), 7, "x").decision is Decision.RECORD_ONLY
    assert "0.0" in sampler.get_description()


@pytest.mark.parametrize(("text", "ratio"), [("0.25", 0.25), ("0", 0.0), ("1", 1.0), ("", 1.0)])
def test_the_ratio_is_read_from_the_environment(text: str, ratio: float) -> None:
    assert TelemetrySettings.from_env({"DETOUR_TRACES_SUCCESS_RATIO": text}).success_ratio == ratio


@pytest.mark.parametrize("text", ["half", "1.5", "-0.1", "nan"])
def test_a_bad_ratio_keeps_everything_and_says_so(text: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "detour.telemetry"):
        settings = TelemetrySettings.from_env({"DETOUR_TRACES_SUCCESS_RATIO": text})
    assert settings.success_ratio == 1.0
    assert "DETOUR_TRACES_SUCCESS_RATIO" in caplog.text
