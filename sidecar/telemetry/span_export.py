"""The OTLP span exporters, with spans encoded by `otlp_encoding.SpanEncoder`, and their processor.

They are the library's own `OTLPSpanExporter`s (HTTP and gRPC: endpoint, headers, TLS, compression,
timeouts, retries, size limit and self-metrics unchanged) with one part replaced — turning spans
into protobuf — because that part, in pure Python under the GIL, was most of what exporting cost
the event loop (docs/telemetry.md, "What it costs"). Behind the SDK's batch processor
(`EncodingSpanProcessor`), each span is encoded as it finishes and the export thread only joins
the batch. A span the fast encoder cannot write goes through the library's encoder, and so does
everything if a later library version no longer has the pieces this relies on: then exporting is
slower, never wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from sidecar.telemetry.otlp_encoding import EncodedSpan, SpanEncoder
from sidecar.telemetry.otlp_wire import UnsupportedValue

if TYPE_CHECKING:
    import requests
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace.status import Status

    from sidecar.telemetry.settings import OtlpTarget
    from sidecar.telemetry.spans import OpenSpan

log = logging.getLogger("detour.telemetry")


def otlp_span_processor(target: OtlpTarget) -> SpanProcessor:
    """The OTLP exporter behind the SDK's batch processor — spans encoded as they finish when the
    exporter can send them so (`EncodingSpanProcessor`)."""
    exporter: SpanExporter
    if target.protocol == "grpc":
        exporter = _grpc_exporter(target)
    else:
        from sidecar.telemetry.otlp_session import requests_session  # loads `requests`: HTTP only

        headers = dict(target.headers) or None
        exporter = FastHttpSpans(
            endpoint=target.endpoint,
            headers=headers,
            timeout=target.timeout_s,
            session=requests_session("TRACES"),
        )
    if getattr(exporter, "fast", False):
        return EncodingSpanProcessor(exporter)
    return BatchSpanProcessor(exporter)


class EncodingSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (`OTEL_BSP_*`, its queue, thread, flush and shutdown), queueing
    each span encoded as it finishes instead of the span object.

    Encoding a batch of 512 spans on the export thread held the interpreter's lock for
    milliseconds at a time, six times a second at 1,500 requests/s, and a request arriving then
    waited for the lock: that, not the CPU it cost, was most of the tail latency telemetry added
    (docs/benchmarks.md, "Where the exporting tail came from"). Encoded one at a time, a span
    costs the thread finishing it — the event loop, after the response went out — a few
    microseconds, and the export thread only joins bytes and sends them. The queue then holds
    one small tuple per span — resource, scope, bytes — rather than a span's graph of objects for
    the cyclic garbage collector to walk.

    Whatever goes wrong in encoding stays here: the span goes through the library's encoder
    instead (which drops, and logs, an attribute it cannot write), or — should that fail too — is
    dropped and logged, never raised into the request that finished it."""

    def __init__(self, exporter: SpanExporter) -> None:
        super().__init__(exporter)
        # The finishing thread's own encoder (the export thread joins batches with the exporter's):
        # Detour finishes its spans on the event loop.
        self._encoder = SpanEncoder()
        self._dropped = 0
        self._queue: Callable[[EncodedSpan], None] = self._batch_processor.emit  # type: ignore[assignment]

    def on_end(self, span: ReadableSpan) -> None:
        if span.context and span.context.trace_flags.sampled:
            self.emit(span)

    def emit(self, span: ReadableSpan) -> None:
        """`on_end` for a span known to be sampled (`spans.SpanStarter`'s)."""
        try:
            encoded = self._encoder.encode_one(span)
        except Exception:
            self._dropped += 1
            if self._dropped == 1:
                log.exception("a span could not be encoded and was dropped: %s", span.name)
            return
        self._queue(encoded)

    def emit_open(
        self,
        span: OpenSpan,
        shared: Mapping[str, Any] | None,
        attributes: Mapping[str, Any],
        events: Sequence[Event],
        status: Status,
        end_ns: int,
        resource: Resource,
        scope: InstrumentationScope,
    ) -> bool:
        """A span finished by `spans.SpanStarter`, encoded from its fields without the
        `ReadableSpan` no other processor needs. False, and nothing queued, when an attribute
        needs the library's encoder: then the caller builds the `ReadableSpan` for `emit`."""
        parent_id, parent_is_remote = span.parent_id()
        try:
            message = self._encoder.span_message(
                span.trace_id, span.span_id, span.trace_state, parent_id, parent_is_remote,
                span.name, span.kind, span.start_ns, end_ns, attributes, events, status, shared=shared,
            )  # fmt: skip
        except Exception:  # `UnsupportedValue`, or a bug here: the library's encoder gets it
            return False
        self._queue((resource, scope, message))
        return True


class _Encoding:
    """One encoder per exporter: only the exporter's batch thread (or a flush) calls it."""

    def __init__(self) -> None:
        self._encoder = SpanEncoder()
        self.fallbacks = 0

    def encode(self, spans: Sequence[ReadableSpan] | Sequence[EncodedSpan]) -> bytes:
        try:
            return self._encoder.encode(spans)
        except (UnsupportedValue, UnicodeEncodeError) as exc:  # never for spans encoded already
            self.fallbacks += 1
            if self.fallbacks == 1:
                log.info("a span batch went through the library's OTLP encoder (%s)", exc)
            data: bytes = encode_spans(spans).SerializePartialToString()  # type: ignore[arg-type]
            return data


class FastHttpSpans(HttpSpans):
    """OTLP/HTTP: the library's `export`, step for step, with the encoding swapped."""

    def __init__(
        self,
        endpoint: str,
        headers: dict[str, str] | None,
        timeout: float | None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(endpoint=endpoint, headers=headers, timeout=timeout, session=session)
        self.encoding = _Encoding()
        # What `export` below uses of the library's internals (opentelemetry-exporter-otlp-proto-http
        # 1.45); without them, the library's own export runs.
        self.fast = all(hasattr(self, name) for name in ("_client", "_metrics", "_max_request_size"))

    def export(self, spans: Sequence[ReadableSpan] | Sequence[EncodedSpan]) -> SpanExportResult:
        if not self.fast or self._shutdown:  # not fast: a plain batch processor's spans, never encoded
            return super().export(spans)  # type: ignore[arg-type]
        from opentelemetry.exporter.otlp.proto.http._common import (
            RequestPayloadTooLargeError,
            _is_request_too_large,
        )

        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self.encoding.encode(spans)
            except Exception as error:  # as the library: a batch that cannot be encoded is dropped
                log.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(data, self._max_request_size):
                log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                    len(data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(f"{len(data)} bytes")
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def _grpc_exporter(target: OtlpTarget) -> SpanExporter:
    """Defined on use: the gRPC exporter loads grpcio, which an OTLP/HTTP sidecar does without."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

    class FastGrpcSpans(GrpcSpans):
        """OTLP/gRPC: the library's extension point for turning spans into the request message.
        The stub wants a message object, so the bytes are parsed back (in C, ~1 µs per span)."""

        def __init__(self) -> None:
            super().__init__(
                endpoint=target.endpoint,
                insecure=target.insecure,
                headers=dict(target.headers) or None,
                timeout=target.timeout_s,
            )
            self.encoding = _Encoding()
            # What sending encoded spans relies on (opentelemetry-exporter-otlp-proto-grpc 1.45):
            # `_export` turning the batch into the request through `_translate_data`.
            self.fast = all(hasattr(self, name) for name in ("_export", "_translate_data", "_count_data"))

        def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
            request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(
                self.encoding.encode(data)
            )
            return request

    return FastGrpcSpans()
