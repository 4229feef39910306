"""Detour's own instrument tables must hand readers what the SDK's instruments would have: the same
measurements recorded through both give the same points, cumulative and delta, to every reader."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.telemetry.aggregation import CARDINALITY_LIMIT, Aggregation, Series
from sidecar.telemetry.instruments import DURATION_BUCKETS, TOKEN_BUCKETS

OURS = InstrumentationScope("detour-own", "1")
SDKS = "detour-sdk"
DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}

attribute_sets = st.fixed_dictionaries(
    {
        "gen_ai.request.model": st.sampled_from(["gpt-4o", "claude-3", "_OTHER"]),
        "server.port": st.sampled_from([443, 8080]),
    },
    optional={"error.type": st.sampled_from(["timeout", "429"])},
)
measurements = st.lists(
    st.tuples(
        st.sampled_from(["duration", "tokens", "events"]),
        st.one_of(st.floats(0, 100, allow_nan=False), st.integers(0, 10**7)),
        attribute_sets,
    ),
    max_size=40,
)


class Clock:
    """Nanoseconds that only move when told: the two sides are compared, not timed."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.now


def _both(readers: list[InMemoryMetricReader], clock: Clock) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each kind of instrument twice: the SDK's and ours, under different scopes of one provider."""
    aggregation = Aggregation(OURS, Resource.create({}), clock)
    for reader in readers:
        aggregation.attach(reader)
    provider = MeterProvider(
        metric_readers=readers, shutdown_on_exit=False, exemplar_filter=AlwaysOffExemplarFilter()
    )
    meter = provider.get_meter(SDKS)
    sdk = {
        "duration": meter.create_histogram(
            "d", "s", "x", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        ),
        "tokens": meter.create_histogram(
            "t", "{token}", "x", explicit_bucket_boundaries_advisory=TOKEN_BUCKETS
        ),
        "events": meter.create_counter("e", "{event}", "x"),
    }
    ours = {
        "duration": aggregation.histogram("d", "s", "x", bounds=DURATION_BUCKETS),
        "tokens": aggregation.histogram("t", "{token}", "x", bounds=TOKEN_BUCKETS),
        "events": aggregation.counter("e", "{event}", "x"),
    }
    return sdk, ours


def _record(instruments: dict[str, Any], name: str, value: float, attributes: dict[str, Any]) -> None:
    instrument = instruments[name]
    if name == "events":
        instrument.add(abs(int(value)), attributes)
    else:
        instrument.record(value, attributes)


def _points(data: MetricsData | None, scope: str) -> Iterator[tuple[Any, ...]]:
    """Everything about each point but its timestamps, in a comparable order (None: no points)."""
    for resource in data.resource_metrics if data is not None else ():
        for scope_metrics in resource.scope_metrics:
            if scope_metrics.scope.name != scope:
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    fields = dict(vars(point))
                    for stamp in ("start_time_unix_nano", "time_unix_nano", "exemplars"):
                        fields.pop(stamp)
                    attributes = tuple(sorted(fields.pop("attributes").items()))
                    # values compare as numbers: 0 and 0.0 are one minimum (OTLP sends a double)
                    rest = tuple(sorted((key, _plain(value)) for key, value in fields.items()))
                    yield (
                        metric.name,
                        metric.unit,
                        metric.description,
                        type(metric.data).__name__,
                        attributes,
                        rest,
                    )
                    if hasattr(metric.data, "aggregation_temporality"):
                        yield metric.name, metric.data.aggregation_temporality


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _same(data: MetricsData | None) -> None:
    ours, sdks = sorted(_points(data, OURS.name), key=str), sorted(_points(data, SDKS), key=str)
    assert ours == sdks


@settings(max_examples=60, deadline=None)
@given(first=measurements, second=measurements)
def test_cumulative_and_delta_readers_get_the_points_the_sdk_would_have_given(
    first: list[tuple[str, float, dict[str, Any]]], second: list[tuple[str, float, dict[str, Any]]]
) -> None:
    cumulative, delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=DELTA)
    clock = Clock()
    sdk, ours = _both([cumulative, delta], clock)
    for batch in (first, second):  # two collections: cumulative keeps adding up, delta starts over
        for name, value, attributes in batch:
            _record(sdk, name, value, attributes)
            _record(ours, name, value, attributes)
        clock.now += 10**9
        _same(cumulative.get_metrics_data())
        _same(delta.get_metrics_data())


def test_points_carry_the_collection_time_and_the_interval_they_cover() -> None:
    clock = Clock()
    cumulative, delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=DELTA)
    _, ours = _both([cumulative, delta], clock)
    began = clock.now
    ours["duration"].record(0.5, {"a": "b"})
    clock.now += 5
    first = _own_point(delta.get_metrics_data())
    assert (first.start_time_unix_nano, first.time_unix_nano, first.count) == (began, began + 5, 1)
    ours["duration"].record(0.7, {"a": "b"})
    clock.now += 5
    second = _own_point(delta.get_metrics_data())
    assert (second.start_time_unix_nano, second.time_unix_nano, second.count) == (began + 5, began + 10, 1)
    total = _own_point(cumulative.get_metrics_data())
    assert (total.start_time_unix_nano, total.time_unix_nano, total.count) == (began, began + 10, 2)
    assert (total.min, total.max, total.sum) == (0.5, 0.7, 1.2)


def _own_point(data: MetricsData) -> Any:
    [point] = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name == OURS.name
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    return point


def test_a_reader_that_collects_rarely_loses_nothing_another_reader_collected() -> None:
    often, rarely = InMemoryMetricReader(preferred_temporality=DELTA), InMemoryMetricReader()
    _, ours = _both([often, rarely], Clock())
    for count in range(1, 4):
        ours["events"].add(count, {"provider": "p"})
        assert _own_point(often.get_metrics_data()).value == count
    assert _own_point(rarely.get_metrics_data()).value == 6


def test_attribute_sets_beyond_the_cap_fold_into_one_overflow_point() -> None:
    reader = InMemoryMetricReader()
    _, ours = _both([reader], Clock())
    for model in itertools.islice(itertools.count(), CARDINALITY_LIMIT + 50):
        ours["events"].add(1, {"model": str(model)})
    points = [
        point
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name == OURS.name
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    assert len(points) == CARDINALITY_LIMIT + 1
    [overflow] = [point for point in points if point.attributes == {"otel.metric.overflow": True}]
    assert overflow.value == 50


def test_a_caller_reusing_its_attribute_dict_does_not_change_recorded_points() -> None:
    reader = InMemoryMetricReader()
    _, ours = _both([reader], Clock())
    attributes = {"provider": "p"}
    ours["events"].add(1, attributes)
    attributes["provider"] = "q"
    assert _own_point(reader.get_metrics_data()).attributes == {"provider": "p"}


def test_prometheus_exposes_them_as_it_exposes_the_sdks() -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    registry = CollectorRegistry(auto_describe=True)
    _, ours = _both([PrometheusMetricReader(registry=registry)], Clock())
    ours_only = {"duration": 0.3, "tokens": 120, "events": 2}
    for name, value in ours_only.items():
        _record(ours, name, value, {"gen_ai.request.model": "gpt-4o"})
    exposition = generate_latest(registry).decode()
    assert 'd_seconds_bucket{gen_ai_request_model="gpt-4o",le="0.32"' in exposition
    assert 'd_seconds_count{gen_ai_request_model="gpt-4o"' in exposition
    assert 'e_total{gen_ai_request_model="gpt-4o"' in exposition
    assert "t_bucket" in exposition or "t_token_bucket" in exposition


def test_a_series_lands_in_the_cell_its_attributes_would() -> None:
    reader = InMemoryMetricReader()
    aggregation = Aggregation(OURS, Resource.create({}), Clock())
    aggregation.attach(reader)
    MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    histogram = aggregation.histogram("d", "s", "x", bounds=DURATION_BUCKETS)
    attributes = {"gen_ai.request.model": "gpt-4o", "server.port": 443}
    histogram.record(0.5, attributes)
    histogram.record_series(1.5, Series(dict(attributes)))
    points = [
        point
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    assert [(dict(point.attributes), point.count, point.sum) for point in points] == [(attributes, 2, 2.0)]
