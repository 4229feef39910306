"""The fast OTLP span encoder writes exactly the bytes of the library's `encode_spans`."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from sidecar.telemetry import otlp_encoding
from sidecar.telemetry.otlp_encoding import SpanEncoder
from sidecar.telemetry.otlp_wire import UnsupportedValue
from sidecar.telemetry.span_export import _Encoding

RESOURCE = Resource.create({"service.name": "detour", "k8s.pod.name": "app-1"})
SCOPE = InstrumentationScope("detour", "1.2.3")


def span(
    name: str = "chat gpt-4o",
    attributes: dict[str, Any] | None = None,
    *,
    trace_id: int = 0x0123456789ABCDEF0123456789ABCDEF,
    span_id: int = 0x1122334455667788,
    parent: SpanContext | None = None,
    kind: SpanKind = SpanKind.CLIENT,
    events: tuple[Event, ...] = (),
    links: tuple[Link, ...] = (),
    status: Status | None = None,
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    trace_state: TraceState | None = None,
) -> ReadableSpan:
    context = SpanContext(trace_id, span_id, False, TraceFlags(1), trace_state)
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes if attributes is not None else {},
        events=events,
        links=links,
        kind=kind,
        status=status or Status(),
        start_time=1_700_000_000_000_000_000,
        end_time=1_700_000_000_123_456_789,
        instrumentation_scope=scope,
    )


def same_as_library(spans: list[ReadableSpan], encoder: SpanEncoder | None = None) -> None:
    ours = (encoder or SpanEncoder()).encode(spans)
    assert ours == encode_spans(spans).SerializeToString()


def test_detour_like_spans_are_byte_identical() -> None:
    server = span(
        "POST /v1/chat/completions",
        {
            "http.request.method": "POST",
            "http.response.status_code": 200,
            "detour.attempts": 2,
            "gen_ai.request.model": "gpt-4o",
        },
        kind=SpanKind.SERVER,
        parent=SpanContext(0x0123456789ABCDEF0123456789ABCDEF, 0xAA, True, TraceFlags(1)),
        events=(Event("detour.failover", {"detour.from": "a", "detour.to": "b"}, 1_700_000_000_000_000_500),),
    )
    attempt = span(
        attributes={
            "server.port": 443,
            "detour.wait_s": 1.5,
            "gen_ai.response.finish_reasons": ("stop", "length"),
            "gen_ai.usage.input_tokens": 0,
        },
        parent=server.context,
        status=Status(StatusCode.ERROR, "rate_limited"),
        events=(Event("detour.rate_limited", {"detour.reason": "429"}, 1_700_000_000_000_000_100),),
    )
    encoder = SpanEncoder()
    same_as_library([server, attempt], encoder)
    same_as_library([attempt, server, attempt], encoder)  # from the cache this time


def test_every_value_type_the_library_writes() -> None:
    attributes = {
        "s": "text é ✓",
        "empty": "",
        "yes": True,
        "no": False,
        "zero": 0,
        "negative": -5,
        "big": 2**63 - 1,
        "smallest": -(2**63),
        "float": -0.25,
        "bytes": b"\x00\xff",
        "ints": (1, 2, 3),
        "mixed": (1, True, 1.0, "1"),
        "list": ["a", "b"],
        "nested": {"k": "v", "n": [1, {"deep": None}]},
        "none": None,
    }
    same_as_library([span(attributes=attributes)])


def test_equal_values_of_different_types_are_not_confused_by_the_cache() -> None:
    encoder = SpanEncoder()
    for value in (1, True, 1.0, (1,), (True,), (1.0,)):
        same_as_library([span(attributes={"v": value})], encoder)


def test_nested_tuples_of_equal_values_and_different_types_are_not_confused() -> None:
    encoder = SpanEncoder()
    for value in (((1, 2),), ((1.0, 2),), ((True, 2),)):
        same_as_library([span(attributes={"v": value})], encoder)


def test_long_strings_are_encoded_every_time_and_not_kept() -> None:
    encoder = SpanEncoder()
    prompt = "p" * (otlp_encoding.CACHED_VALUE_LIMIT + 1)
    same_as_library([span(attributes={"gen_ai.input.messages": prompt, "short": "kept"})], encoder)
    cached = [value for by_key in encoder._attributes.values() for key, by_kind in by_key.items()
              for by_value in by_kind.values() for value in by_value]  # fmt: skip
    assert "kept" in cached
    assert prompt not in cached


def test_a_span_longer_than_two_length_bytes_allow() -> None:
    # 16 KiB and more: a three-byte length prefix (captured prompts make such spans)
    same_as_library([span(attributes={"gen_ai.input.messages": "m" * 20_000}), span()])


def test_kinds_states_links_statuses_and_groups() -> None:
    other_resource = Resource.create(
        {"service.name": "other"}, schema_url="https://opentelemetry.io/schemas/1.21.0"
    )
    other_scope = InstrumentationScope("other", None, "https://example.com/schema")
    spans = [span(kind=kind, span_id=index + 1) for index, kind in enumerate(SpanKind)] + [
        span(trace_state=TraceState([("vendor", "x"), ("b", "2")])),
        span(links=(Link(SpanContext(5, 6, True, TraceFlags(1), TraceState([("k", "v")])), {"a": 1}),)),
        span(status=Status(StatusCode.OK)),
        span(status=Status(StatusCode.ERROR)),
        span(resource=other_resource, scope=other_scope),
        span(scope=None),
        span(events=(Event("no attributes", None, 7),)),
        span(name=""),
    ]
    same_as_library(spans)


@pytest.mark.parametrize("size", [1, 3, 600])
@pytest.mark.parametrize("schemas", [True, False])
def test_batches_of_spans_encoded_as_they_finished_are_joined_as_the_library_writes_them(
    size: int, schemas: bool
) -> None:
    """One resource and scope (what Detour exports: joined at once, from one-byte lengths to a
    batch of 600 spans needing three), then mixed ones (grouped span by span)."""
    resource = Resource.create(
        {"service.name": "detour"}, schema_url="https://opentelemetry.io/schemas/1.21.0" if schemas else ""
    )
    scope = InstrumentationScope("detour", "1", "https://example.com/schema" if schemas else None)
    spans = [span(span_id=index + 1, resource=resource, scope=scope) for index in range(size)]
    encoder = SpanEncoder()
    encoded = [encoder.encode_one(s) for s in spans]
    assert encoder._encoded_alike(encoded) is not None  # the one-join path, not the grouping loop
    assert encoder.encode(encoded) == encode_spans(spans).SerializeToString()
    mixed = [*spans, span(resource=RESOURCE), span(scope=None), spans[0]]
    joined = encoder.encode([encoder.encode_one(s) for s in mixed])
    assert joined == encode_spans(mixed).SerializeToString()


def test_a_batch_shorter_than_a_length_byte_and_without_a_scope_is_joined_as_the_library_writes_it() -> None:
    small = ReadableSpan(
        name="",
        context=SpanContext(1, 2, False, TraceFlags(1)),
        resource=Resource.get_empty(),
        instrumentation_scope=None,
    )
    encoder = SpanEncoder()
    expected = encode_spans([small]).SerializeToString()
    assert len(expected) < 128
    assert encoder.encode([encoder.encode_one(small)]) == expected


def test_a_span_with_a_parent_and_a_trace_state_keeps_the_fields_in_order() -> None:
    """An attempt under a client's `tracestate`: field 3 (trace state) before field 4 (parent)."""
    parent = SpanContext(0x0123456789ABCDEF0123456789ABCDEF, 0xAA, True, TraceFlags(1))
    state = TraceState([("vendor", "value")])
    same_as_library([span(parent=parent, trace_state=state), span(parent=parent)])


def test_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_encoding, "CACHE_LIMIT", 8)
    encoder = SpanEncoder()
    for index in range(50):
        same_as_library([span(attributes={"gen_ai.usage.input_tokens": index})], encoder)
    cached = [value for by_key in encoder._attributes.values() for by_kind in by_key.values()
              for by_value in by_kind.values() for value in by_value]  # fmt: skip
    assert 0 < len(cached) <= 8


def test_a_value_it_cannot_write_falls_back_to_the_library(caplog: pytest.LogCaptureFixture) -> None:
    spans = [span(attributes={"ok": 1, "huge": 2**64, "set": {1}})]  # type: ignore[dict-item]
    with pytest.raises(UnsupportedValue):
        SpanEncoder().encode(spans)
    encoding = _Encoding()
    with caplog.at_level(logging.INFO, "detour.telemetry"):
        data = encoding.encode(spans)
        encoding.encode(spans)
    assert data == encode_spans(spans).SerializePartialToString()
    assert encoding.fallbacks == 2
    not_unicode = [span(attributes={"bad \ud800": 1, "ok": 2})]  # a key no encoder can write
    assert encoding.encode(not_unicode) == encode_spans(not_unicode).SerializePartialToString()
    assert encoding.fallbacks == 3
    assert sum("library's OTLP encoder" in record.getMessage() for record in caplog.records) == 1


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=12), values, max_size=6), min_size=1, max_size=4))
def test_any_attributes_encode_as_the_library_does(batches: list[dict[str, Any]]) -> None:
    encoder = SpanEncoder()
    spans = [span(attributes=attributes, span_id=index + 1) for index, attributes in enumerate(batches)]
    same_as_library(spans, encoder)
    same_as_library(spans, encoder)


def test_the_http_exporter_sends_the_fast_bytes_and_reports_what_it_could_not_send() -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from sidecar.telemetry.span_export import FastHttpSpans
    from tests.telemetry.receivers import OtlpHttpReceiver

    spans = [span(attributes={"n": 1})]
    with OtlpHttpReceiver() as receiver:
        exporter = FastHttpSpans(f"{receiver.endpoint}/v1/traces", None, 2.0)
        assert exporter.fast, "the library still has what the fast path uses"
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert receiver.received.traces == [encode_spans(spans)]
        limit, exporter._max_request_size = exporter._max_request_size, 10
        assert exporter.export(spans) is SpanExportResult.FAILURE, "over the size limit: dropped"
        exporter._max_request_size = limit
        exporter.fast = False  # a library without those pieces: its own export runs
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert len(receiver.received.traces) == 2
        exporter.shutdown()
