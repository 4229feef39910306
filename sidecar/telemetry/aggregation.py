"""Detour's synchronous instruments, aggregated in tables of their own and merged into what every
metric reader collects.

Why not the SDK's own `Counter` and `Histogram`: each measurement through them copies, validates
and hashes its attributes and walks the view and reader machinery — about 10 µs per measurement
with one reader and 17 µs with two, three or more measurements per upstream attempt, on the event
loop (docs/telemetry.md, "What it costs"). Here a measurement is a dict lookup keyed by its
attributes and a few additions (about 1 to 2 µs), and the work of turning tables into data points is
done when a reader collects, on the reader's thread.

What the readers receive is what the SDK would have produced for the same measurements: the same
`Metric`, `Sum` and `Histogram` data classes, cumulative or delta as each reader prefers, the same
start and end times, min and max, and the same cardinality cap (2,000 attribute sets per
instrument, later ones folded into one `otel.metric.overflow` point). The merge wraps the collect
callback the `MeterProvider` hands each reader (`Aggregation.attach`), which every collection goes
through, so OTLP, Prometheus and in-process readers all see these metrics, under Detour's
instrumentation scope.
The asynchronous (observable) instruments stay the SDK's: they are read once per collection.

Measurements come from the event loop's thread, collections from readers' threads: one lock,
held for a few additions per measurement and for a swap per collection.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry.sdk.metrics import Counter, Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

CARDINALITY_LIMIT = 2000  # the SDK's default per instrument and reader
OVERFLOW: Mapping[str, Any] = {"otel.metric.overflow": True}
_OVERFLOW_KEY = frozenset(OVERFLOW.items())

Attributes = Mapping[str, Any]
Key = frozenset[tuple[str, Any]]


class Series:
    """An attribute set with its table key computed once, for measurements whose attributes repeat
    (an upstream attempt's: telemetry/attempt_attributes.py). The attributes must not change."""

    __slots__ = ("attributes", "key")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.key: Key = frozenset(attributes.items())


class _Cell:
    """One attribute set's running totals. A counter uses `total` only."""

    __slots__ = ("attributes", "buckets", "maximum", "minimum", "started_ns", "total")

    def __init__(self, attributes: Attributes, buckets: int, started_ns: int) -> None:
        self.attributes = dict(attributes)  # a copy: the caller may reuse its dict
        self.started_ns = started_ns
        self.total: int | float = 0
        self.minimum = float("inf")
        self.maximum = float("-inf")
        self.buckets = [0] * buckets

    def merge(self, other: _Cell) -> None:
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.buckets = [mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)]


class _Instrument:
    __slots__ = ("_aggregation", "_cells", "description", "name", "unit")

    kind: type  # the SDK instrument class a reader's temporality preference is keyed by

    def __init__(self, aggregation: Aggregation, name: str, unit: str, description: str) -> None:
        self._aggregation = aggregation
        self.name = name
        self.unit = unit
        self.description = description
        self._cells: dict[Key, _Cell] = {}  # since the last collection; swapped out by it

    def _cell(self, key: Key, attributes: Attributes, buckets: int) -> _Cell:
        """The cell of `attributes`, whose key is `key` (held under the aggregation's lock)."""
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= CARDINALITY_LIMIT:
                key, attributes = _OVERFLOW_KEY, OVERFLOW
                cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = _Cell(attributes, buckets, self._aggregation.clock())
        return cell

    def take(self) -> dict[Key, _Cell]:
        cells, self._cells = self._cells, {}
        return cells

    def data(self, points: Sequence[Any], temporality: AggregationTemporality) -> Any:
        raise NotImplementedError

    def point(self, cell: _Cell, start_ns: int, now_ns: int) -> Any:
        raise NotImplementedError


class AggregatedCounter(_Instrument):
    """A monotonic counter: `add(amount, attributes)` like the SDK's `Counter`."""

    __slots__ = ()
    kind = Counter

    def add(self, amount: int | float, attributes: Attributes) -> None:
        with self._aggregation.lock:
            self._cell(frozenset(attributes.items()), attributes, 0).total += amount

    def data(self, points: Sequence[Any], temporality: AggregationTemporality) -> Sum:
        return Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=True)

    def point(self, cell: _Cell, start_ns: int, now_ns: int) -> NumberDataPoint:
        return NumberDataPoint(
            attributes=cell.attributes, start_time_unix_nano=start_ns, time_unix_nano=now_ns, value=cell.total
        )


class AggregatedHistogram(_Instrument):
    """An explicit-bucket histogram: `record(value, attributes)` like the SDK's `Histogram`."""

    __slots__ = ("bounds",)
    kind = Histogram

    def __init__(
        self, aggregation: Aggregation, name: str, unit: str, description: str, bounds: Sequence[float]
    ) -> None:
        super().__init__(aggregation, name, unit, description)
        self.bounds = tuple(bounds)

    def record(self, value: int | float, attributes: Attributes) -> None:
        self._record(value, frozenset(attributes.items()), attributes)

    def record_series(self, value: int | float, series: Series) -> None:
        """`record`, for attributes whose key was computed before."""
        self._record(value, series.key, series.attributes)

    def _record(self, value: int | float, key: Key, attributes: Attributes) -> None:
        with self._aggregation.lock:
            cell = self._cells.get(key) or self._cell(key, attributes, len(self.bounds) + 1)
            cell.total += value
            if value < cell.minimum:
                cell.minimum = value
            if value > cell.maximum:
                cell.maximum = value
            cell.buckets[bisect_left(self.bounds, value)] += 1

    def data(self, points: Sequence[Any], temporality: AggregationTemporality) -> HistogramData:
        return HistogramData(data_points=points, aggregation_temporality=temporality)

    def point(self, cell: _Cell, start_ns: int, now_ns: int) -> HistogramDataPoint:
        return HistogramDataPoint(
            attributes=cell.attributes,
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            count=sum(cell.buckets),
            sum=cell.total,
            bucket_counts=tuple(cell.buckets),
            explicit_bounds=self.bounds,
            min=cell.minimum,
            max=cell.maximum,
        )


InstrumentT = TypeVar("InstrumentT", bound=_Instrument)


@dataclasses.dataclass
class _ReaderTables:
    """What one reader has not been given yet (delta) or has been given so far (cumulative)."""

    temporality: Mapping[type, AggregationTemporality]  # by SDK instrument class
    cells: dict[str, dict[Key, _Cell]] = dataclasses.field(default_factory=dict)
    last_collection_ns: int | None = None


class Aggregation:
    """The instruments of one meter and the readers their data is merged into."""

    def __init__(
        self, scope: InstrumentationScope, resource: Resource, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.scope = scope
        self.resource = resource
        self.clock = clock
        self.lock = threading.Lock()  # measurements, and the swap of their tables
        self._collecting = threading.Lock()  # readers' tables: readers collect on threads of their own
        self._instruments: list[_Instrument] = []
        self._readers: list[_ReaderTables] = []

    def counter(self, name: str, unit: str, description: str) -> AggregatedCounter:
        return self._add(AggregatedCounter(self, name, unit, description))

    def histogram(
        self, name: str, unit: str, description: str, *, bounds: Sequence[float]
    ) -> AggregatedHistogram:
        return self._add(AggregatedHistogram(self, name, unit, description, bounds))

    def _add(self, instrument: InstrumentT) -> InstrumentT:
        self._instruments.append(instrument)
        return instrument

    def attach(self, reader: MetricReader) -> None:
        """Merge these instruments into every collection of `reader`; call it before the reader is
        given to the `MeterProvider`, which then hands the reader its collect callback. Wrapping that
        callback (not `collect` or `_receive_metrics`) is what every path takes — a periodic export,
        a flush, a Prometheus scrape — including a collection in which the SDK itself has nothing."""
        preferences = getattr(reader, "_instrument_class_temporality", {})
        tables = _ReaderTables(
            {
                kind: next(
                    (chosen for cls, chosen in preferences.items() if issubclass(cls, kind)),
                    AggregationTemporality.CUMULATIVE,
                )
                for kind in (Counter, Histogram)
            }
        )
        with self._collecting:
            self._readers.append(tables)
        hand_callback = reader._set_collect_callback

        def hand_merged_callback(collect: Callable[..., MetricsData | None] | None) -> None:
            if collect is None:  # the provider shut down
                hand_callback(None)
                return

            def collect_merged(*args: Any, **kwargs: Any) -> MetricsData | None:
                return self._merged(collect(*args, **kwargs), tables)

            hand_callback(collect_merged)  # type: ignore[arg-type]  # the SDK's hint is narrower than its calls

        reader._set_collect_callback = hand_merged_callback  # type: ignore[misc,assignment,method-assign]

    def _merged(self, metrics_data: MetricsData | None, reader: _ReaderTables) -> MetricsData | None:
        metrics = self._collect(reader)
        if not metrics:
            return metrics_data
        if metrics_data is None:  # the SDK's instruments had nothing this time
            metrics_data = MetricsData(resource_metrics=[])
        resources = list(metrics_data.resource_metrics) or [
            ResourceMetrics(resource=self.resource, scope_metrics=[], schema_url=self.resource.schema_url)
        ]
        first = resources[0]
        scopes = list(first.scope_metrics)
        for index, scope in enumerate(scopes):
            if scope.scope.name == self.scope.name:
                scopes[index] = dataclasses.replace(scope, metrics=[*scope.metrics, *metrics])
                break
        else:
            scopes.append(
                ScopeMetrics(scope=self.scope, metrics=metrics, schema_url=self.scope.schema_url or "")
            )
        resources[0] = dataclasses.replace(first, scope_metrics=scopes)
        return dataclasses.replace(metrics_data, resource_metrics=resources)

    def _collect(self, reader: _ReaderTables) -> list[Metric]:
        """Hand what was measured since the last collection of any reader to every reader's tables,
        then build this reader's data points."""
        with self._collecting:
            with self.lock:
                fresh = [(instrument, instrument.take()) for instrument in self._instruments]
                now_ns = self.clock()
            for tables in self._readers:
                for instrument, cells in fresh:
                    if cells:
                        _absorb(tables.cells.setdefault(instrument.name, {}), cells)
            return self._points(reader, now_ns)

    def _points(self, reader: _ReaderTables, now_ns: int) -> list[Metric]:
        metrics = []
        for instrument in self._instruments:
            temporality = reader.temporality[instrument.kind]
            cells = reader.cells.get(instrument.name, {})
            if temporality is AggregationTemporality.DELTA:
                reader.cells[instrument.name] = {}
                start = reader.last_collection_ns
                points = [instrument.point(cell, start or cell.started_ns, now_ns) for cell in cells.values()]
            else:
                points = [instrument.point(cell, cell.started_ns, now_ns) for cell in cells.values()]
            if points:
                data = instrument.data(points, temporality)
                metrics.append(Metric(instrument.name, instrument.description, instrument.unit, data))
        reader.last_collection_ns = now_ns
        return metrics


def _absorb(into: dict[Key, _Cell], cells: Mapping[Key, _Cell]) -> None:
    """Add `cells` to a reader's table, whose size the cardinality cap bounds as the SDK's does."""
    for key, cell in cells.items():
        mine = into.get(key)
        if mine is None and len(into) >= CARDINALITY_LIMIT:
            key = _OVERFLOW_KEY
            mine = into.get(key)
            if mine is None:
                mine = into[key] = _Cell(OVERFLOW, len(cell.buckets), cell.started_ns)
        if mine is None:
            into[key] = _copy(cell)
        else:
            mine.merge(cell)


def _copy(cell: _Cell) -> _Cell:
    """Readers must not share a cell: each merges into its own."""
    copy = _Cell(cell.attributes, len(cell.buckets), cell.started_ns)
    copy.merge(cell)
    return copy
