"""Turn `TelemetrySettings` into running OpenTelemetry providers, exporters and a scrape endpoint.

The SDK, the OTLP exporters (gRPC pulls in grpcio and protobuf) and the Prometheus client are
imported here, inside `start_telemetry`, and only for what the settings ask for: with telemetry
off none of them is loaded, which keeps the idle memory and the start-up time of docs/architecture.md §7.

The providers are this process's own objects, never installed as OpenTelemetry's globals, so
several sidecars (tests) can run side by side, each with its own exporters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sidecar.telemetry.instruments import ActiveLimits, Instruments
from sidecar.telemetry.settings import OtlpTarget, TelemetrySettings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

    from sidecar.telemetry.hooks import DetourTracing
    from sidecar.telemetry.spans import SpanStarter

log = logging.getLogger("detour.telemetry")

SCOPE = "detour"


class Telemetry:
    """What `detour serve` (or a test) holds: the router's tracing hook, flush and shutdown."""

    def __init__(
        self,
        tracing: DetourTracing,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        scrape_server: tuple[WSGIServer, threading.Thread] | None,
    ) -> None:
        self.tracing = tracing
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._scrape_server = scrape_server

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where Prometheus scrapes (the port actually bound when 0 was asked for)."""
        if self._scrape_server is None:
            return None
        host, port = self._scrape_server[0].server_address[:2]
        return str(host), int(port)

    def watch_limits(self, active: ActiveLimits) -> None:
        if self.tracing.instruments is not None:
            self.tracing.instruments.watch_limits(active)

    def force_flush(self, timeout_ms: int = 10_000) -> bool:
        """Export everything recorded so far (blocking: call it off the event loop)."""
        flushed = True
        if self.tracer_provider is not None:
            flushed = self.tracer_provider.force_flush(timeout_ms) and flushed
        if self.meter_provider is not None:
            flushed = self.meter_provider.force_flush(timeout_ms) and flushed
        return flushed

    def shutdown(self) -> None:
        """Flush and stop exporters and the scrape endpoint (blocking: call it off the event loop)."""
        if self._scrape_server is not None:
            server, thread = self._scrape_server
            self._scrape_server = None
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def start_telemetry(
    settings: TelemetrySettings,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry | None:
    """None when nothing is to be exported. `span_exporters` / `metric_readers` add in-process
    destinations (tests, or an embedding program) to those of the settings."""
    traces_on = settings.traces is not None or bool(span_exporters)
    metrics_on = settings.metrics_enabled or bool(metric_readers)
    if not traces_on and not metrics_on:
        return None
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create(dict(settings.resource) | {"service.version": _version()})
    tracer_provider, spans = (
        _tracer_provider(settings, resource, span_exporters) if traces_on else (None, None)
    )
    meter_provider = None
    aggregation = None
    scrape_server = None
    readers = list(metric_readers)
    if settings.metrics is not None:
        readers.append(_otlp_metric_reader(settings.metrics, settings.metric_interval_ms))
    if settings.prometheus is not None:
        reader, scrape_server = _prometheus(*settings.prometheus)
        readers.append(reader)
    if readers:
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from sidecar.telemetry.aggregation import Aggregation

        aggregation = Aggregation(InstrumentationScope(SCOPE, _version()), resource)
        for reader in readers:
            aggregation.attach(reader)

        # No exemplars: measurements are taken after the request, outside any span's context, and
        # the exemplar bookkeeping would cost each measurement a third more.
        meter_provider = MeterProvider(
            metric_readers=readers,
            resource=resource,
            shutdown_on_exit=False,
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
    from sidecar.telemetry.hooks import DetourTracing

    tracing = DetourTracing(
        spans,
        Instruments(meter_provider.get_meter(SCOPE, _version()), aggregation)
        if meter_provider is not None and aggregation is not None
        else None,
        capture_content=settings.capture_content,
    )
    telemetry = Telemetry(tracing, tracer_provider, meter_provider, scrape_server)
    scrape = telemetry.metrics_address
    log.info(
        "telemetry on: traces %s, metrics %s%s",
        _describe(settings.traces) if settings.traces else ("in-process" if span_exporters else "off"),
        _describe(settings.metrics) if settings.metrics else "not sent by OTLP",
        f", Prometheus scrape on http://{scrape[0]}:{scrape[1]}/metrics" if scrape else "",
    )
    return telemetry


def _tracer_provider(
    settings: TelemetrySettings, resource: Any, span_exporters: Sequence[SpanExporter]
) -> tuple[TracerProvider, SpanStarter]:
    """The provider (flush, shutdown) and what starts Detour's spans: its sampler, ids and resource,
    exporting through its processors. Each exporter gets the SDK's `BatchSpanProcessor` with its
    defaults (`OTEL_BSP_*`: a batch of up to 512 spans every 5 s, or as soon as 512 are queued; at
    most 2048 queued, later ones dropped) — exporting runs on the processor's own thread; the OTLP
    exporter's encodes each span as it finishes (`span_export.EncodingSpanProcessor`). Smaller
    batches were measured: no better tail, more CPU per span (docs/benchmarks.md)."""
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from sidecar.telemetry.spans import SpanStarter

    processor = SynchronousMultiSpanProcessor()
    provider = TracerProvider(
        sampler=_sampler(settings),
        resource=resource,
        shutdown_on_exit=False,
        active_span_processor=processor,
    )
    for exporter in span_exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if settings.traces is not None:
        from sidecar.telemetry.span_export import otlp_span_processor

        provider.add_span_processor(otlp_span_processor(settings.traces))
    return provider, SpanStarter(provider, processor, InstrumentationScope(SCOPE, _version()))


def _otlp_metric_reader(target: OtlpTarget, interval_ms: int) -> MetricReader:
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader

    exporter: MetricExporter
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        exporter = GrpcMetrics(
            endpoint=target.endpoint,
            insecure=target.insecure,
            headers=dict(target.headers) or None,
            timeout=target.timeout_s,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        from sidecar.telemetry.otlp_session import requests_session

        exporter = HttpMetrics(
            endpoint=target.endpoint,
            headers=dict(target.headers) or None,
            timeout=target.timeout_s,
            session=requests_session("METRICS"),
        )
    return PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)


def _prometheus(host: str, port: int) -> tuple[MetricReader, tuple[WSGIServer, threading.Thread]]:
    """A reader on a registry of our own (no process-global state) and its scrape endpoint, served
    by a thread that notices a shutdown within 0.1 s (prometheus_client's own helper takes 0.5 s)."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, make_wsgi_app

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    server = make_server(host, port, make_wsgi_app(registry), Server, handler_class=QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="detour-metrics", daemon=True
    )
    thread.start()
    return reader, (server, thread)


def _sampler(settings: TelemetrySettings) -> Sampler:
    """The standard OTEL_TRACES_SAMPLER values; unknown ones fall back to parentbased_always_on.
    A success ratio under 1 replaces them with `KeepEvidence`, which decides at the request's end."""
    from opentelemetry.sdk.trace import sampling

    name = settings.sampler
    if settings.success_ratio < 1.0:
        from sidecar.telemetry.sampling import KeepEvidence

        if name != "parentbased_always_on":
            log.warning(
                "DETOUR_TRACES_SUCCESS_RATIO is set: it samples instead of OTEL_TRACES_SAMPLER=%s", name
            )
        return KeepEvidence(settings.success_ratio)
    ratio = 1.0
    if name.endswith("traceidratio"):
        try:
            ratio = float(settings.sampler_arg) if settings.sampler_arg is not None else 1.0
        except ValueError:
            log.warning(
                "OTEL_TRACES_SAMPLER_ARG=%r is not a number; sampling everything", settings.sampler_arg
            )
    samplers: dict[str, Sampler] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        log.warning("OTEL_TRACES_SAMPLER=%r is not supported; using parentbased_always_on", name)
    return samplers.get(name, samplers["parentbased_always_on"])


def _describe(target: OtlpTarget) -> str:
    """For the log: never a URL's user-info (the exporters' headers are not logged either)."""
    from urllib.parse import urlsplit

    parts = urlsplit(target.endpoint)
    where = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}" if parts.hostname else "?"
    if "://" not in target.endpoint:
        where = target.endpoint  # grpc's host:port form
    return f"OTLP {target.protocol} to {where}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("detour")
    except PackageNotFoundError:
        return "0.0.0"
