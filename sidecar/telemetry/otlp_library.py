"""The library's own OTLP encoder, for the parts `otlp_encoding.SpanEncoder` cannot write (a value of
another type, a name that is not valid Unicode): it drops, and logs, what it cannot write either."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan


def library_span(span: ReadableSpan) -> bytes:
    """The serialized `Span` message the library's encoder writes for one span."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
    data: bytes = message.SerializePartialToString()
    return data


def library_parts(resource: Any, scope: Any) -> Any:
    """The `ResourceSpans` message the library writes for a span of `resource` and `scope`, for
    the resource or scope part `SpanEncoder` could not write."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

    resource = resource if resource is not None else Resource.get_empty()
    span = ReadableSpan("", SpanContext(1, 1, False), resource=resource, instrumentation_scope=scope)
    return encode_spans([span]).resource_spans[0]
