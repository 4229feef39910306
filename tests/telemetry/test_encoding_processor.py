"""The OTLP exporter's processor encodes each span as it finishes: what reaches the collector must
be, message for message, what the SDK's own batch processor and the library's encoder send for
the same spans — whichever way a span reaches it (Detour's span starter, `on_end`, the library's
encoder for a value ours cannot write, span limits)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from sidecar.telemetry import runtime, span_export
from sidecar.telemetry.otlp_session import EnvironmentOnce, requests_session
from sidecar.telemetry.sampling import KeepEvidence
from sidecar.telemetry.settings import OtlpTarget
from sidecar.telemetry.span_export import EncodingSpanProcessor, FastHttpSpans, otlp_span_processor
from sidecar.telemetry.spans import SpanStarter
from tests.telemetry.receivers import OtlpGrpcReceiver, OtlpHttpReceiver

CLIENT_CONTEXT = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value")]),
)


class Pipeline:
    """A span starter exporting through the OTLP processor (`otlp_span_processor`: HTTP or gRPC)
    to a real receiver and, side by side, through the SDK's `BatchSpanProcessor` to memory."""

    def __init__(self, receiver: OtlpHttpReceiver | OtlpGrpcReceiver, provider: TracerProvider) -> None:
        self.receiver = receiver
        self.memory = InMemorySpanExporter()
        self.processors = SynchronousMultiSpanProcessor()
        self.processors.add_span_processor(BatchSpanProcessor(self.memory))
        if isinstance(receiver, OtlpGrpcReceiver):
            target = OtlpTarget(protocol="grpc", endpoint=receiver.endpoint, insecure=True, timeout_s=2.0)
        else:
            target = OtlpTarget("http/protobuf", f"{receiver.endpoint}/v1/traces", timeout_s=2.0)
        encoding = otlp_span_processor(target)
        assert type(encoding) is EncodingSpanProcessor
        self.encoding = encoding
        self.processors.add_span_processor(encoding)
        self.starter = SpanStarter(provider, self.processors, InstrumentationScope("detour", "1.0"))

    def received(self) -> list[ExportTraceServiceRequest]:
        assert self.processors.force_flush(5_000)
        return list(self.receiver.received.traces)

    def expected(self) -> ExportTraceServiceRequest:
        return encode_spans(self.memory.get_finished_spans())


@contextlib.contextmanager
def pipeline_to(protocol: str, provider: TracerProvider | None = None) -> Iterator[Pipeline]:
    if provider is None:
        provider = TracerProvider(resource=Resource.create({"service.name": "app"}), shutdown_on_exit=False)
    with OtlpGrpcReceiver() if protocol == "grpc" else OtlpHttpReceiver() as receiver:
        built = Pipeline(receiver, provider)
        yield built
        built.processors.shutdown()


@pytest.fixture(params=["http/protobuf", "grpc"])
def pipeline(request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    with pipeline_to(request.param) as built:
        yield built


# An attempt's first attributes, the same mapping for every attempt of its kind (`shared`).
KIND = {"gen_ai.operation.name": "chat", "server.address": "api.openai.com", "server.port": 443}


def finish_a_request(
    starter: SpanStarter, attempt_attributes: dict[str, Any], shared: dict[str, Any] | None = None
) -> None:
    """A SERVER span under a client's context, an attempt under it with an event and an error."""
    server = starter.start("POST /v1/chat/completions", SpanKind.SERVER, CLIENT_CONTEXT)
    attempt = starter.start("chat gpt-4o", SpanKind.CLIENT, server)
    attempt.finish(
        attempt_attributes,
        [Event("detour.rate_limited", {"detour.limit.scope": "requests"}, 1_700_000_000_000_000_001)],
        Status(StatusCode.ERROR, "429 from openai"),
        shared=shared,
    )
    server.finish({"http.response.status_code": 200, "detour.failover": True})


def test_spans_finished_by_detour_reach_the_collector_as_the_library_writes_them(pipeline: Pipeline) -> None:
    assert pipeline.starter._encoders == (pipeline.encoding,)
    finish_a_request(pipeline.starter, {"gen_ai.request.model": "gpt-4o", "detour.attempt": 1})
    finish_a_request(pipeline.starter, {"gen_ai.request.model": "gpt-4o", "detour.attempt": 2})
    [request] = pipeline.received()
    assert len(pipeline.memory.get_finished_spans()) == 4
    assert request == pipeline.expected()
    spans = request.resource_spans[0].scope_spans[0].spans
    assert spans[0].parent_span_id == spans[1].span_id, "the attempt's parent is its request"
    assert spans[1].parent_span_id == CLIENT_CONTEXT.span_id.to_bytes(8, "big")
    assert spans[1].trace_state == "vendor=value"


def test_shared_first_attributes_are_written_before_the_spans_own_as_the_library_would(
    pipeline: Pipeline,
) -> None:
    finish_a_request(pipeline.starter, {"detour.attempt": 1}, shared=KIND)
    finish_a_request(pipeline.starter, {"detour.attempt": 2, "huge": 2**64}, shared=KIND)  # the library's
    finish_a_request(pipeline.starter, {"detour.attempt": 3}, shared=KIND)  # written once, reused
    [request] = pipeline.received()
    assert request == pipeline.expected()
    attempts = request.resource_spans[0].scope_spans[0].spans[::2]
    keys = [pair.key for pair in attempts[2].attributes]
    assert keys == ["gen_ai.operation.name", "server.address", "server.port", "detour.attempt"]
    assert [pair.key for pair in attempts[1].attributes] == keys, "the library drops only the huge one"


def test_a_value_only_the_library_writes_goes_through_its_encoder_for_that_span(pipeline: Pipeline) -> None:
    finish_a_request(pipeline.starter, {"huge": 2**64, "ok": 1})  # beyond int64: ours refuses
    finish_a_request(pipeline.starter, {"ok": 2})
    [request] = pipeline.received()
    assert request == pipeline.expected()
    attempt = request.resource_spans[0].scope_spans[0].spans[0]
    assert [pair.key for pair in attempt.attributes] == ["ok"], "the library drops it, and logs why"


def test_spans_handed_to_on_end_are_encoded_and_unsampled_ones_dropped(pipeline: Pipeline) -> None:
    def readable(name: str, flags: int) -> ReadableSpan:
        context = SpanContext(CLIENT_CONTEXT.trace_id, 7, False, TraceFlags(flags))
        return ReadableSpan(name=name, context=context, attributes={"n": 1}, start_time=1, end_time=2)

    kept = readable("kept", TraceFlags.SAMPLED)
    pipeline.encoding.on_end(kept)
    pipeline.encoding.on_end(readable("dropped", TraceFlags.DEFAULT))
    [request] = pipeline.received()
    assert request == encode_spans([kept])


def test_with_span_limits_set_the_span_goes_through_the_sdks_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "1")
    with pipeline_to("http/protobuf") as bounded:
        assert bounded.starter._encoders == (), "limits: the ReadableSpan carries what they dropped"
        bounded.starter.start("s", SpanKind.SERVER, None).finish({"a": 1, "b": 2})
        bounded.starter.start("t", SpanKind.SERVER, None).finish({"b": 2}, shared={"a": 1})
        [request] = bounded.received()
        assert request == bounded.expected()
    for span in request.resource_spans[0].scope_spans[0].spans:
        assert (len(span.attributes), span.dropped_attributes_count) == (1, 1)
        assert span.attributes[0].key == "b", "bounded as one mapping, shared first: the SDK keeps the last"


def test_an_event_count_limit_keeps_the_latest_events_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "1")
    events = [Event(f"detour.failover {index}", {"n": index}, index + 1) for index in range(3)]
    with pipeline_to("http/protobuf") as bounded:
        bounded.starter.start("s", SpanKind.SERVER, None).finish({"a": 1}, events)
        [request] = bounded.received()
        assert request == bounded.expected()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert [event.name for event in span.events] == ["detour.failover 2"]
    assert span.dropped_events_count == 2


def test_spans_recorded_for_their_evidence_are_sent_as_the_library_writes_them() -> None:
    # A success ratio of 0: spans are recorded but not sampled, and finished (marked sampled)
    # only when their request held a rate limit, a failover or an error.
    provider = TracerProvider(sampler=KeepEvidence(0.0), shutdown_on_exit=False)
    with pipeline_to("http/protobuf", provider) as evidence:
        server = evidence.starter.start("POST /v1/chat/completions", SpanKind.SERVER, None)
        assert server.recording
        assert not server.sampled
        finish_a_request(evidence.starter, {"gen_ai.request.model": "gpt-4o"})
        [request] = evidence.received()
        assert request == evidence.expected()
    assert len(request.resource_spans[0].scope_spans[0].spans) == 2


def test_a_resource_only_the_library_writes_is_written_by_it() -> None:
    provider = TracerProvider(resource=Resource.create({"big": 2**64, "ok": "yes"}), shutdown_on_exit=False)
    with pipeline_to("http/protobuf", provider) as unusual:
        finish_a_request(unusual.starter, {"n": 1})
        [request] = unusual.received()
        assert request == unusual.expected()
    keys = [pair.key for pair in request.resource_spans[0].resource.attributes]
    assert "ok" in keys
    assert "big" not in keys, "the library drops it, and logs why"


def test_what_no_encoder_can_write_never_reaches_the_request(caplog: pytest.LogCaptureFixture) -> None:
    with pipeline_to("http/protobuf") as broken:
        # Not valid Unicode: ours refuses the attribute, the library drops it (and logs why).
        finish_a_request(broken.starter, {"bad": "\ud800", "ok": 1})
        # Not valid Unicode in a span's name: the library cannot write the span at all.
        with caplog.at_level(logging.ERROR, "detour.telemetry"):
            broken.starter.start("bad \ud800", SpanKind.SERVER, None).finish({})
        [request] = broken.received()
        spans = broken.memory.get_finished_spans()
        assert [span.name for span in spans][-1] == "bad \ud800", "the other processors still got it"
        assert request == encode_spans(spans[:-1])
    attempt = request.resource_spans[0].scope_spans[0].spans[0]
    assert [pair.key for pair in attempt.attributes] == ["ok"]
    assert any("could not be encoded" in record.getMessage() for record in caplog.records)


def test_the_otlp_processor_encodes_as_spans_finish_only_when_its_exporter_can_send_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http = OtlpTarget(protocol="http/protobuf", endpoint="http://127.0.0.1:9/v1/traces")

    class WithoutThePieces(FastHttpSpans):  # a later library without what `export` relies on
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fast = False

    monkeypatch.setattr(span_export, "FastHttpSpans", WithoutThePieces)
    processor = otlp_span_processor(http)
    assert type(processor) is BatchSpanProcessor
    processor.shutdown()


def test_the_http_exporter_reads_the_environment_once_unless_a_credential_provider_gives_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):  # a runner's own proxy settings would change the answer
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    session = EnvironmentOnce()
    url = "http://collector:4318/v1/traces"
    first = session.merge_environment_settings(url, {}, None, True, None)
    assert first["proxies"] == {"http": "http://proxy.internal:3128"}
    first["proxies"]["http"] = "changed by requests"  # the caller's copy, not the remembered one
    monkeypatch.setenv("HTTP_PROXY", "http://elsewhere:3128")  # read once: at the first batch
    assert session.merge_environment_settings(url, {}, None, True, None)["proxies"] == {
        "http": "http://proxy.internal:3128"
    }
    given = session.merge_environment_settings(url, {"http": "http://given:1"}, None, True, None)
    assert given["proxies"] == {"http": "http://given:1"}  # a request's own proxies win, as in requests

    http = OtlpTarget(protocol="http/protobuf", endpoint="http://127.0.0.1:9/v1/traces")
    processor = otlp_span_processor(http)
    assert type(processor.span_exporter._client._transport._session) is EnvironmentOnce
    processor.shutdown()
    reader = runtime._otlp_metric_reader(http, 60_000)
    assert type(reader._exporter._client._transport._session) is EnvironmentOnce
    reader.shutdown()
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_METRICS_CREDENTIAL_PROVIDER", "some-provider")
    assert requests_session("METRICS") is None  # the library loads the provider's session
    assert type(requests_session("TRACES")) is EnvironmentOnce
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "some-provider")
    assert requests_session("TRACES") is None


def test_the_otlp_certificate_is_trusted_over_a_ca_bundle_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`requests` on its own lets `REQUESTS_CA_BUNDLE` replace a session's CA file; the exporter was
    given `OTEL_EXPORTER_OTLP_CERTIFICATE`, so that one is used."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/environment-bundle.pem")
    url = "https://collector:4318/v1/traces"
    with_file = EnvironmentOnce()
    with_file.verify = "/etc/otel/collector-ca.pem"
    assert (
        with_file.merge_environment_settings(url, {}, None, None, None)["verify"]
        == "/etc/otel/collector-ca.pem"
    )
    without = EnvironmentOnce()  # no certificate configured: the environment's bundle, as before
    assert (
        without.merge_environment_settings(url, {}, None, None, None)["verify"]
        == "/etc/ssl/environment-bundle.pem"
    )
