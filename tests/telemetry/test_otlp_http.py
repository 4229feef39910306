"""End to end over OTLP/HTTP (http/protobuf), with streams: usage and the finish reason come from the
stream's own events, time to first chunk is measured, and the SERVER span lasts until the stream ends."""

from __future__ import annotations

import httpx

from sidecar.simulate import RateLimit, Reply, SimulatedProvider
from sidecar.telemetry.instruments import DURATION_BUCKETS
from tests.support.running import config_text, limits_alternative_rule, pair_config, provider
from tests.telemetry.receivers import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    OtlpHttpReceiver,
    only_point,
    only_span,
)
from tests.telemetry.traced import AUTH, CHAT, QUIET, traced_sidecar

MESSAGES = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello"}],
}


async def test_a_failed_over_stream_is_traced_and_measured_over_otlp_http() -> None:
    with OtlpHttpReceiver() as receiver:
        env = {**QUIET, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}  # http/protobuf by default
        async with (
            SimulatedProvider("openai", name="primary") as primary,
            SimulatedProvider("openai", name="backup") as backup,
        ):
            primary.script(RateLimit(retry_after="12"))
            async with (
                traced_sidecar(pair_config(primary, backup), env) as detour,
                httpx.AsyncClient() as client,
            ):
                body = {**CHAT, "stream": True}
                response = await client.post(detour.url + "/v1/chat/completions", json=body, headers=AUTH)
                await detour.flush_until(
                    lambda: any(span.kind == SPAN_KIND_SERVER for span in receiver.received.spans())
                )

    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    assert '"usage":{' not in response.text, "the usage Detour asked for on its own is not forwarded"
    spans = receiver.received.spans()
    server = only_span(spans, SPAN_KIND_SERVER)
    assert server.attributes["http.response.status_code"] == 200
    assert [name for name, _ in server.events] == ["detour.failover"]
    attempts = {span.attributes["detour.provider"]: span for span in spans if span.kind == SPAN_KIND_CLIENT}
    assert attempts["primary"].status_code == STATUS_ERROR
    assert [name for name, _ in attempts["primary"].events] == ["detour.rate_limited"]
    answered = attempts["backup"]
    assert answered.parent_span_id == server.span_id
    assert answered.attributes["gen_ai.usage.input_tokens"] == 12
    assert answered.attributes["gen_ai.usage.output_tokens"] == 7
    assert answered.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert answered.attributes["gen_ai.response.model"] == "gpt-4o"
    assert backup.requests[0].headers["traceparent"].split("-")[2] == answered.span_id

    points = receiver.received.points()
    first_chunk = only_point(points, "gen_ai.client.operation.time_to_first_chunk")
    assert (first_chunk.unit, first_chunk.count, first_chunk.bounds) == ("s", 1, DURATION_BUCKETS)
    assert first_chunk.attributes["server.port"] == backup.port
    assert only_point(points, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}).value == 7
    assert only_point(points, "detour.rate_limit.backoff").value == 12.0


async def test_an_anthropic_stream_reports_usage_from_message_start_and_message_delta() -> None:
    with OtlpHttpReceiver() as receiver:
        env = {**QUIET, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        async with SimulatedProvider("anthropic", name="claude") as claude:
            claude.script(Reply(usage=(30, 9)))
            text = config_text(
                {"claude": provider("anthropic", claude.base_url)}, [limits_alternative_rule(["claude"])]
            )
            async with traced_sidecar(text, env) as detour, httpx.AsyncClient() as client:
                body = {**MESSAGES, "stream": True}
                headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
                response = await client.post(detour.url + "/v1/messages", json=body, headers=headers)
                await detour.flush_until(
                    lambda: any(span.kind == SPAN_KIND_SERVER for span in receiver.received.spans())
                )

    assert response.status_code == 200
    spans = receiver.received.spans()
    assert only_span(spans, SPAN_KIND_SERVER).name == "POST /v1/messages"
    attempt = only_span(spans, SPAN_KIND_CLIENT)
    assert attempt.name == "chat claude-sonnet-4-5"
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 30
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 9
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert attempt.attributes["gen_ai.response.model"] == "claude-sonnet-4-5"
    points = receiver.received.points()
    usage = only_point(points, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    assert usage.attributes["gen_ai.provider.name"] == "anthropic"
    assert usage.value == 30


async def test_prompt_and_completion_are_recorded_only_when_opted_in() -> None:
    with OtlpHttpReceiver() as receiver:
        env = {
            **QUIET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        }
        async with SimulatedProvider("openai", name="gpt", reply_text="Bonjour") as gpt:
            text = config_text({"gpt": provider("openai", gpt.base_url)}, [limits_alternative_rule(["gpt"])])
            async with traced_sidecar(text, env) as detour, httpx.AsyncClient() as client:
                await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
                await detour.flush()

    attempt = only_span(receiver.received.spans(), SPAN_KIND_CLIENT)
    assert "Hello" in attempt.attributes["gen_ai.input.messages"]
    assert "Bonjour" in attempt.attributes["gen_ai.output.messages"]
    assert "sk-" not in repr(receiver.received.traces)
