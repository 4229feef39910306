"""In-process OTLP receivers on 127.0.0.1, standing in for an OpenTelemetry Collector.

No collector binary can be installed here, so the tests receive what Detour exports with the
`opentelemetry-proto` service stubs (gRPC) and a plain HTTP server decoding the same protobuf
messages (OTLP/HTTP). Both run on their own threads: the exporters are synchronous and flushing
them must not wait on the test's event loop. `Received` flattens what arrived into plain values.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    resource: dict[str, Any]


@dataclass(frozen=True)
class ReceivedPoint:
    metric: str
    unit: str
    kind: str  # sum | histogram | gauge
    attributes: dict[str, Any]
    value: float  # the sum's or gauge's value; a histogram's sum
    count: int = 0  # histograms only
    bounds: tuple[float, ...] = ()
    monotonic: bool = False


@dataclass
class Received:
    """Everything one receiver got, shared between its server threads."""

    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[ReceivedSpan]:
        with self.lock:
            requests = list(self.traces)
        found = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found.extend(_span(span, resource) for span in scope_spans.spans)
        return found

    def points(self) -> list[ReceivedPoint]:
        """Metric points of the latest export that has each metric (cumulative temporality)."""
        with self.lock:
            requests = list(self.metrics)
        latest: dict[str, list[ReceivedPoint]] = {}
        for request in requests:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        latest[metric.name] = list(_points(metric))
        return [point for points in latest.values() for point in points]

    def resources(self) -> list[dict[str, Any]]:
        with self.lock:
            requests = list(self.metrics)
        return [attributes_of(rm.resource.attributes) for r in requests for rm in r.resource_metrics]


SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
STATUS_UNSET, STATUS_ERROR = 0, 2


def only_span(spans: list[ReceivedSpan], kind: int) -> ReceivedSpan:
    found = [span for span in spans if span.kind == kind]
    assert len(found) == 1, found
    return found[0]


def only_point(points: list[ReceivedPoint], metric: str, **attributes: Any) -> ReceivedPoint:
    """The one point of `metric` whose attributes include `attributes`."""
    found = [
        point
        for point in points
        if point.metric == metric and all(point.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (metric, attributes, [p for p in points if p.metric == metric])
    return found[0]


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)


def _span(span: Span, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        attributes=attributes_of(span.attributes),
        events=[(event.name, attributes_of(event.attributes)) for event in span.events],
        status_code=span.status.code,
        resource=resource,
    )


def _points(metric: Metric) -> Iterator[ReceivedPoint]:
    kind = metric.WhichOneof("data")
    if kind == "sum":
        for point in metric.sum.data_points:
            value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
            yield ReceivedPoint(
                metric.name,
                metric.unit,
                "sum",
                attributes_of(point.attributes),
                value,
                monotonic=metric.sum.is_monotonic,
            )
    elif kind == "gauge":
        for point in metric.gauge.data_points:
            value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
            yield ReceivedPoint(metric.name, metric.unit, "gauge", attributes_of(point.attributes), value)
    elif kind == "histogram":
        for point in metric.histogram.data_points:
            yield ReceivedPoint(
                metric.name,
                metric.unit,
                "histogram",
                attributes_of(point.attributes),
                point.sum,
                count=point.count,
                bounds=tuple(point.explicit_bounds),
            )


class OtlpGrpcReceiver(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    """`with OtlpGrpcReceiver() as receiver:` then export to `receiver.endpoint` with protocol grpc."""

    def __init__(self) -> None:
        self.received = Received()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # both services call it Export
        with self.received.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.received.traces.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.received.metrics.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    def __enter__(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None)


class OtlpHttpReceiver:
    """`with OtlpHttpReceiver() as receiver:` then export to `receiver.endpoint` (http/protobuf)."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    request: Any = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                    with received.lock:
                        received.traces.append(request)
                elif self.path == "/v1/metrics":
                    request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse()
                    with received.lock:
                        received.metrics.append(request)
                else:
                    self.send_error(404)
                    return
                payload = reply.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.port = self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpHttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
