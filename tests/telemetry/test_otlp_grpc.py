"""End to end over OTLP/gRPC: a request whose primary answers 429 and whose alternative answers 200,
received by an in-process collector stand-in. Real sidecar, real sockets, simulated providers."""

from __future__ import annotations

import httpx
import pytest_asyncio

from sidecar.simulate import RateLimit, SimulatedProvider
from sidecar.telemetry.instruments import BACKOFF_BUCKETS, DURATION_BUCKETS, TOKEN_BUCKETS
from tests.support.running import pair_config
from tests.telemetry.receivers import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    OtlpGrpcReceiver,
    Received,
    ReceivedSpan,
    only_point,
    only_span,
)
from tests.telemetry.traced import (
    AUTH,
    CHAT,
    CLIENT_SPAN_ID,
    CLIENT_TRACE_ID,
    QUIET,
    SECRET,
    TRACEPARENT,
    traced_sidecar,
)


class Scenario:
    """What one failover request left behind: the client's answer, the upstreams' requests, telemetry."""

    response: httpx.Response
    primary: SimulatedProvider
    backup: SimulatedProvider
    received: Received


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def failover() -> Scenario:
    """Run once for the module: every test below reads what this one request left behind."""
    scenario = Scenario()
    env = {
        **QUIET,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "detour-e2e",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        "K8S_POD_NAME": "shop-7d9f",
        "K8S_NAMESPACE_NAME": "shop",
        "K8S_NODE_NAME": "node-1",
    }
    with OtlpGrpcReceiver() as receiver:
        async with (
            SimulatedProvider("openai", name="primary") as primary,
            SimulatedProvider("openai", name="backup") as backup,
        ):
            primary.script(RateLimit(retry_after="30"))
            text = pair_config(primary, backup)
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
            async with traced_sidecar(text, env) as detour, httpx.AsyncClient() as client:
                headers = {**AUTH, "traceparent": TRACEPARENT}
                scenario.response = await client.post(
                    detour.url + "/v1/chat/completions", json=CHAT, headers=headers
                )
                await detour.flush()
        scenario.primary, scenario.backup, scenario.received = primary, backup, receiver.received
    return scenario


def _attempts(scenario: Scenario) -> tuple[ReceivedSpan, ReceivedSpan]:
    attempts = [span for span in scenario.received.spans() if span.kind == SPAN_KIND_CLIENT]
    assert len(attempts) == 2
    by_provider = {span.attributes["detour.provider"]: span for span in attempts}
    return by_provider["primary"], by_provider["backup"]


def test_the_request_fails_over_and_answers_normally(failover: Scenario) -> None:
    assert failover.response.status_code == 200
    assert failover.response.headers["x-detour-provider"] == "backup"


def test_the_server_span_continues_the_clients_trace(failover: Scenario) -> None:
    server = only_span(failover.received.spans(), SPAN_KIND_SERVER)
    assert server.name == "POST /v1/chat/completions"
    assert (server.trace_id, server.parent_span_id) == (CLIENT_TRACE_ID, CLIENT_SPAN_ID)
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gen_ai.request.model"] == "gpt-4o"
    assert server.attributes["detour.provider"] == "backup"
    assert server.attributes["detour.attempts"] == 2
    assert server.status_code == STATUS_UNSET


def test_the_server_span_carries_the_failover_event(failover: Scenario) -> None:
    server = only_span(failover.received.spans(), SPAN_KIND_SERVER)
    assert server.events == [
        ("detour.failover", {"detour.from": "primary", "detour.to": "backup", "detour.reason": "rate_limit"})
    ]


def test_each_upstream_attempt_is_a_client_span_with_the_genai_attributes(failover: Scenario) -> None:
    server = only_span(failover.received.spans(), SPAN_KIND_SERVER)
    limited, answered = _attempts(failover)
    for span, sim in ((limited, failover.primary), (answered, failover.backup)):
        assert span.name == "chat gpt-4o"
        assert span.parent_span_id == server.span_id
        assert span.trace_id == CLIENT_TRACE_ID
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.request.model"] == "gpt-4o"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == sim.port
        assert "gen_ai.system" not in span.attributes, "the deprecated attribute is not used"


def test_the_429_attempt_is_an_error_with_the_rate_limited_event(failover: Scenario) -> None:
    limited, _ = _attempts(failover)
    assert limited.status_code == STATUS_ERROR
    assert limited.attributes["error.type"] == "429"
    assert limited.attributes["http.response.status_code"] == 429
    assert limited.events == [
        (
            "detour.rate_limited",
            {
                "detour.provider": "primary",
                "gen_ai.request.model": "gpt-4o",
                "detour.wait_s": 30.0,
                "detour.wait_source": "retry-after",
                "detour.reason": "rate_limit",
            },
        )
    ]


def test_the_answering_attempt_records_usage_model_and_finish_reason(failover: Scenario) -> None:
    _, answered = _attempts(failover)
    assert answered.status_code == STATUS_UNSET
    assert "error.type" not in answered.attributes
    assert answered.attributes["gen_ai.response.model"] == "gpt-4o"
    assert answered.attributes["gen_ai.usage.input_tokens"] == 12
    assert answered.attributes["gen_ai.usage.output_tokens"] == 7
    assert answered.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert answered.events == []


def test_each_upstream_request_carries_its_own_attempts_trace_context(failover: Scenario) -> None:
    limited, answered = _attempts(failover)
    assert failover.primary.requests[0].headers["traceparent"] == f"00-{CLIENT_TRACE_ID}-{limited.span_id}-01"
    assert failover.backup.requests[0].headers["traceparent"] == f"00-{CLIENT_TRACE_ID}-{answered.span_id}-01"


def test_the_resource_names_the_service_and_its_kubernetes_pod(failover: Scenario) -> None:
    server = only_span(failover.received.spans(), SPAN_KIND_SERVER)
    for resource in [server.resource, *failover.received.resources()]:
        assert resource["service.name"] == "detour-e2e"
        assert resource["deployment.environment.name"] == "test"
        assert resource["k8s.pod.name"] == "shop-7d9f"
        assert resource["k8s.namespace.name"] == "shop"
        assert resource["k8s.node.name"] == "node-1"


def test_no_credential_and_no_content_reaches_telemetry(failover: Scenario) -> None:
    exported = repr(failover.received.traces) + repr(failover.received.metrics)
    assert SECRET not in exported
    assert "Hello" not in exported, "prompt content is recorded only when opted in"
    for span in failover.received.spans():
        assert "gen_ai.input.messages" not in span.attributes


def test_the_rate_limit_metrics_count_the_event_the_wait_and_the_failover(failover: Scenario) -> None:
    points = failover.received.points()
    events = only_point(points, "detour.rate_limit.events", provider="primary")
    assert (events.kind, events.monotonic, events.value, events.unit) == ("sum", True, 1, "{event}")
    assert events.attributes == {"provider": "primary", "model": "gpt-4o", "reason": "rate_limit"}
    backoff = only_point(points, "detour.rate_limit.backoff", provider="primary")
    assert (backoff.kind, backoff.unit, backoff.count, backoff.value) == ("histogram", "s", 1, 30.0)
    assert backoff.bounds == tuple(float(b) for b in BACKOFF_BUCKETS)
    failovers = only_point(points, "detour.failovers")
    assert failovers.attributes == {"from": "primary", "to": "backup", "reason": "rate_limit"}
    assert failovers.value == 1
    used = only_point(points, "detour.rate_limit.alternatives_used")
    assert used.attributes == {
        "primary_provider": "primary",
        "alternative_provider": "backup",
        "model": "gpt-4o",
    }
    assert used.value == 1


def test_the_active_gauge_counts_the_limited_primary(failover: Scenario) -> None:
    points = failover.received.points()
    assert only_point(points, "detour.rate_limit.active", provider="primary").value == 1
    assert only_point(points, "detour.rate_limit.active", provider="backup").value == 0
    assert only_point(points, "detour.rate_limit.active", provider="primary").kind == "gauge"


def test_each_attempt_records_its_duration_with_the_genai_buckets(failover: Scenario) -> None:
    points = failover.received.points()
    limited = only_point(points, "gen_ai.client.operation.duration", **{"error.type": "429"})
    answered = only_point(points, "gen_ai.client.operation.duration", **{"server.port": failover.backup.port})
    assert "error.type" not in answered.attributes
    for point in (limited, answered):
        assert (point.unit, point.count, point.bounds) == ("s", 1, DURATION_BUCKETS)
        assert 0 < point.value < 5
        assert point.attributes["gen_ai.operation.name"] == "chat"
        assert point.attributes["gen_ai.provider.name"] == "openai"
        assert point.attributes["gen_ai.request.model"] == "gpt-4o"
    assert answered.attributes["gen_ai.response.model"] == "gpt-4o"


def test_token_usage_is_recorded_per_token_type(failover: Scenario) -> None:
    points = failover.received.points()
    given = only_point(points, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    produced = only_point(points, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"})
    assert (given.value, produced.value) == (12, 7)
    for point in (given, produced):
        assert (point.unit, point.count, point.bounds) == (
            "{token}",
            1,
            tuple(float(b) for b in TOKEN_BUCKETS),
        )
        assert point.attributes["gen_ai.response.model"] == "gpt-4o"
    assert not [p for p in points if p.metric == "gen_ai.client.operation.time_to_first_chunk"], (
        "not a stream"
    )
