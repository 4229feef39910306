"""The OTLP span exporters, with the batch encoded by `otlp_encoding.SpanEncoder`.

They are the library's own `OTLPSpanExporter`s (HTTP and gRPC: endpoint, headers, TLS, compression,
timeouts, retries, size limit and self-metrics unchanged) with one part replaced — turning a batch
of spans into protobuf — because that part, in pure Python under the GIL, was most of what exporting
cost the event loop (docs/telemetry.md, "What it costs"). A batch the fast encoder cannot write
goes through the library's encoder, and so does everything if a later library version no longer
has the pieces this relies on: then exporting is slower, never wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult

from sidecar.telemetry.otlp_encoding import SpanEncoder, UnsupportedValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from sidecar.telemetry.settings import OtlpTarget

log = logging.getLogger("detour.telemetry")


def otlp_span_exporter(target: OtlpTarget) -> SpanExporter:
    if target.protocol == "grpc":
        return _grpc_exporter(target)
    headers = dict(target.headers) or None
    return FastHttpSpans(endpoint=target.endpoint, headers=headers, timeout=target.timeout_s)


class _Encoding:
    """One encoder per exporter: only the exporter's batch thread (or a flush) calls it."""

    def __init__(self) -> None:
        self._encoder = SpanEncoder()
        self.fallbacks = 0

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        try:
            return self._encoder.encode(spans)
        except UnsupportedValue as exc:
            self.fallbacks += 1
            if self.fallbacks == 1:
                log.info("a span batch went through the library's OTLP encoder (%s)", exc)
            data: bytes = encode_spans(spans).SerializePartialToString()
            return data


class FastHttpSpans(HttpSpans):
    """OTLP/HTTP: the library's `export`, step for step, with the encoding swapped."""

    def __init__(self, endpoint: str, headers: dict[str, str] | None, timeout: float | None) -> None:
        super().__init__(endpoint=endpoint, headers=headers, timeout=timeout)
        self.encoding = _Encoding()
        # What `export` below uses of the library's internals (opentelemetry-exporter-otlp-proto-http
        # 1.45); without them, the library's own export runs.
        self.fast = all(hasattr(self, name) for name in ("_client", "_metrics", "_max_request_size"))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.fast or self._shutdown:
            return super().export(spans)
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

        def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
            request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(
                self.encoding.encode(data)
            )
            return request

    return FastGrpcSpans()
