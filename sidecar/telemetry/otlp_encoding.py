"""OTLP's `ExportTraceServiceRequest` written straight as protobuf bytes, for the span exporters.

The OTLP exporters encode a batch by building one protobuf object per span, attribute, value and
event through `opentelemetry-exporter-otlp-proto-common` — about 80 µs of CPU per Detour span, on
the exporter's thread but under the GIL, so a batch of 512 spans stops the event loop for ~40 ms
(docs/telemetry.md, "What it costs"). Detour's spans repeat the same few attributes, so here each
key/value pair is encoded once and then looked up (a bounded cache), the resource and scope once
per batch, and each span is a join of byte strings: ~5 µs per span.

The bytes are the message the library's `encode_spans` builds, field for field (the tests parse
both and compare). Anything this encoder does not know how to write — a value of another type —
raises `UnsupportedValue` (`otlp_wire`), and the library's encoder writes that batch, or that span
(`encode_one`), instead.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import is_, itemgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanContext as _SpanContext
from opentelemetry.trace import SpanKind as _SpanKind
from opentelemetry.trace import StatusCode as _StatusCode
from opentelemetry.trace.status import Status

from sidecar.telemetry.otlp_library import library_parts, library_span
from sidecar.telemetry.otlp_wire import UnsupportedValue
from sidecar.telemetry.otlp_wire import field as _field
from sidecar.telemetry.otlp_wire import key_value as _key_value
from sidecar.telemetry.otlp_wire import varint as _varint

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Event, ReadableSpan

# Field tags, (field number << 3) | wire type; 0: varint, 1: 64-bit, 2: length-delimited, 5: 32-bit.
_RESOURCE_SPANS = 0x0A  # ExportTraceServiceRequest.resource_spans = 1
_RS_RESOURCE, _RS_SCOPE_SPANS, _RS_SCHEMA_URL = 0x0A, 0x12, 0x1A
_RESOURCE_ATTRIBUTES = 0x0A
_SS_SCOPE, _SS_SPANS, _SS_SCHEMA_URL = 0x0A, 0x12, 0x1A
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTRIBUTES = 0x0A, 0x12, 0x1A
_SPAN_TRACE_ID, _SPAN_SPAN_ID, _SPAN_TRACE_STATE, _SPAN_PARENT_ID = 0x0A, 0x12, 0x1A, 0x22
_SPAN_NAME, _SPAN_KIND, _SPAN_START, _SPAN_END = 0x2A, 0x30, 0x39, 0x41
_SPAN_ATTRIBUTES, _SPAN_DROPPED_ATTRIBUTES, _SPAN_EVENTS, _SPAN_DROPPED_EVENTS = 0x4A, 0x50, 0x5A, 0x60
_SPAN_LINKS, _SPAN_DROPPED_LINKS, _SPAN_STATUS = 0x6A, 0x70, 0x7A
_SPAN_FLAGS = b"\x85\x01"  # field 16, fixed32: two bytes of tag
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTRIBUTES, _EVENT_DROPPED = 0x09, 0x12, 0x1A, 0x20
_LINK_ATTRIBUTES = 0x22
_LINK_DROPPED, _LINK_FLAGS = 0x28, 0x35
_STATUS_MESSAGE, _STATUS_CODE = 0x12, 0x18

# SpanFlags: the exporters say whether the parent is remote (and that they know).
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_FIXED32 = struct.Struct("<I")
_FIXED64 = struct.Struct("<Q")
# SpanKind INTERNAL=0 … CONSUMER=4 are OTLP's SPAN_KIND_INTERNAL=1 … SPAN_KIND_CONSUMER=5.
_KINDS = tuple(bytes((_SPAN_KIND, kind + 1)) for kind in range(5))
_SERVER, _CLIENT = _KINDS[1], _KINDS[2]  # SpanKind.SERVER.value == 1, CLIENT 2
_PLAIN_MAPPINGS = (dict, MappingProxyType, type(None))
_PLAIN = (list, tuple)
_UNSET_STATUS = bytes((_SPAN_STATUS, 0))  # always present, empty when unset
_TIMES = struct.Struct("<BQBQ")  # a span's start and end: tag, fixed64, tag, fixed64
_TRACE_ID_TAG, _SPAN_ID_TAG = bytes((_SPAN_TRACE_ID, 16)), bytes((_SPAN_SPAN_ID, 8))
_PARENT_ID_TAG = bytes((_SPAN_PARENT_ID, 8))
_LOCAL_PARENT = _SPAN_FLAGS + _FIXED32.pack(_HAS_IS_REMOTE)
_REMOTE_PARENT = _SPAN_FLAGS + _FIXED32.pack(_HAS_IS_REMOTE | _IS_REMOTE)
_UNSET_LOCAL_PARENT, _UNSET_REMOTE_PARENT = _UNSET_STATUS + _LOCAL_PARENT, _UNSET_STATUS + _REMOTE_PARENT
# A span's (or a link's) ids: the trace id's tag, its two halves (big-endian, as the wire has
# them), the span id's tag and the span id, then the parent's tag and id when it has one.
_IDS = struct.Struct(">2sQQ2sQ")
_IDS_AND_PARENT = struct.Struct(">2sQQ2sQ2sQ")
_LOW64 = (1 << 64) - 1
_SERVER_KIND, _CLIENT_KIND = _SpanKind.SERVER, _SpanKind.CLIENT
# An unset status: the one Detour's spans share, so that most spans are checked by identity.
UNSET = Status()
CACHE_LIMIT = 4096  # encoded key/value pairs kept, and span names; Detour's spans use a few dozen
CACHED_VALUE_LIMIT = 256  # longer strings are encoded every time, not kept
SHARED_LIMIT = 1024  # shared attribute mappings kept: one per kind of attempt (attempt_attributes.py)


EncodedSpan = tuple[Any, Any, bytes]  # a finished span: its resource, scope and `ScopeSpans.spans` field
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)  # an `EncodedSpan`'s parts


class SpanEncoder:
    """Encodes batches of finished spans; one per exporter (its cache is used by one thread)."""

    __slots__ = ("_attributes", "_cached", "_names", "_plain_span", "_resources", "_scopes", "_shared")

    def __init__(self) -> None:
        from opentelemetry.sdk.trace import ReadableSpan

        self._plain_span = ReadableSpan  # exactly this class: its fields are read directly
        # Encoded key/value pairs: by field tag, key, the value's type, then the value (three
        # lookups of one object each cost less than hashing and comparing a tuple of all four).
        self._attributes: dict[int, dict[str, dict[type, dict[Any, bytes]]]] = {}
        self._names: dict[str, bytes] = {}
        self._shared: dict[int, tuple[Mapping[str, Any], bytes]] = {}  # `_shared_attributes`
        self._cached = 0  # pairs in `_attributes`
        # Encoded once, keyed by identity (the library groups by equality, which hashes a
        # resource's attributes as JSON for every span); each entry keeps its object alive, so
        # its id is not reused while the entry exists.
        self._resources: dict[int, tuple[Any, bytes, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes, bytes]] = {}

    def encode(self, spans: Sequence[ReadableSpan] | Sequence[EncodedSpan]) -> bytes:
        """The serialized `ExportTraceServiceRequest` of `spans` (or of spans encoded already:
        `encode_one`), grouped by resource, then scope, in the order they first appear, like the library."""
        data = self._encoded_alike(spans)
        if data is None:
            data = self._grouped(spans)
        if len(self._resources) > 16 or len(self._scopes) > 16:  # many providers (tests): don't hoard
            self._resources.clear()
            self._scopes.clear()
        return data

    def _grouped(self, spans: Sequence[Any]) -> bytes:
        """`encode` of any other batch: spans not yet encoded (a plain batch processor's, a
        fallback), or of several resources or scopes, grouped span by span."""
        groups: dict[int, dict[int, list[bytes]]] = {}
        group: list[bytes] = []
        last: tuple[object, object] | None = None  # Detour's spans share one resource and scope
        for span in spans:
            encoded: bytes | None
            if type(span) is tuple:
                resource, scope, encoded = span
            else:
                resource, scope, encoded = span.resource, span.instrumentation_scope or None, None
            if last is None or resource is not last[0] or scope is not last[1]:
                self._parts(resource, scope)
                group = groups.setdefault(id(resource), {}).setdefault(id(scope), [])
                last = (resource, scope)
            group.append(encoded if encoded is not None else self._span(span))
        out = []
        for resource_id, scopes in groups.items():
            _, resource_part, resource_schema = self._resources[resource_id]
            scope_parts = []
            for scope_id, scope_spans in scopes.items():
                _, scope_part, scope_schema = self._scopes[scope_id]
                body = scope_part + b"".join(scope_spans) + scope_schema
                scope_parts.append(_field(_RS_SCOPE_SPANS, body))
            out.append(_field(_RESOURCE_SPANS, resource_part + b"".join(scope_parts) + resource_schema))
        return b"".join(out)

    def _encoded_alike(self, spans: Sequence[Any]) -> bytes | None:
        """`encode` of encoded spans of one resource and scope (Detour's batches), checked by C
        loops and written by one join: a Python loop, then a copy per enclosing message, held the
        interpreter's lock, away from the event loop, for ~0.4 ms per batch. None for others."""
        if not spans or set(map(type, spans)) != {tuple}:
            return None
        resource, scope, _ = spans[0]
        if not (
            all(map(is_, map(_FIRST, spans), repeat(resource)))
            and all(map(is_, map(_SECOND, spans), repeat(scope)))
        ):
            return None
        resource_part, resource_schema, scope_part, scope_schema = self._parts(resource, scope)
        encoded = list(map(_THIRD, spans))
        scope_spans = len(scope_part) + sum(map(len, encoded)) + len(scope_schema)
        scope_head = bytes((_RS_SCOPE_SPANS,)) + _varint(scope_spans)
        resource_spans = len(resource_part) + len(scope_head) + scope_spans + len(resource_schema)
        head = bytes((_RESOURCE_SPANS,)) + _varint(resource_spans) + resource_part + scope_head + scope_part
        return b"".join((head, *encoded, scope_schema, resource_schema))

    def _parts(self, resource: Any, scope: Any) -> tuple[bytes, bytes, bytes, bytes]:
        """The resource's field and schema URL, then the scope's, each written on first sight."""
        if id(resource) not in self._resources:
            self._remember_resource(resource)
        if id(scope) not in self._scopes:
            self._remember_scope(scope)
        return self._resources[id(resource)][1:] + self._scopes[id(scope)][1:]

    def encode_one(self, span: ReadableSpan) -> EncodedSpan:
        """One span, encoded when it finishes, for `encode` to join into a batch later. Anything
        this encoder cannot write (a value of another type, a name that is not valid Unicode) is
        written by the library's encoder, for this span alone."""
        try:
            encoded = self._span(span)
        except (UnsupportedValue, UnicodeEncodeError):
            encoded = _field(_SS_SPANS, library_span(span))
        return span.resource, span.instrumentation_scope or None, encoded

    def _remember_resource(self, resource: Any) -> None:
        try:
            body = self._attributes_of(_RESOURCE_ATTRIBUTES, resource.attributes)
        except (UnsupportedValue, UnicodeEncodeError):
            body = library_parts(resource, None).resource.SerializePartialToString()
        schema = resource.schema_url
        schema_part = _field(_RS_SCHEMA_URL, schema.encode()) if schema else b""
        self._resources[id(resource)] = (resource, _field(_RS_RESOURCE, body), schema_part)

    def _remember_scope(self, scope: Any) -> None:
        schema = scope.schema_url if scope is not None else ""
        schema_part = _field(_SS_SCHEMA_URL, schema.encode()) if schema else b""
        try:
            body = self._scope(scope)
        except (UnsupportedValue, UnicodeEncodeError):
            body = library_parts(None, scope).scope_spans[0].scope.SerializePartialToString()
        self._scopes[id(scope)] = (scope, _field(_SS_SCOPE, body), schema_part)

    def _scope(self, scope: Any) -> bytes:
        if scope is None:
            return b""
        body = _field(_SCOPE_NAME, scope.name.encode()) if scope.name else b""
        if scope.version:
            body += _field(_SCOPE_VERSION, scope.version.encode())
        if scope.attributes:
            body += self._attributes_of(_SCOPE_ATTRIBUTES, scope.attributes)
        return body

    def _attributes_of(self, tag: int, attributes: Mapping[str, Any] | None) -> bytes:
        """The `KeyValue` fields under `tag`, each from the cache when it was seen before. The
        value's type is part of the key: `1`, `1.0` and `True` are equal in Python but are
        encoded differently (so a tuple's key holds its items' types too)."""
        if not attributes:
            return b""
        by_key = self._attributes.get(tag)
        if by_key is None:
            by_key = self._attributes[tag] = {}
        out = []
        for key, value in attributes.items():
            kind = type(value)
            try:
                out.append(by_key[key][kind][value if kind is not tuple else (value, *map(type, value))])
            except (KeyError, TypeError):  # not seen yet, or unhashable (a list, a dict, ...)
                out.append(self._remember(by_key, tag, key, kind, value))
        return b"".join(out)

    def _remember(
        self, by_key: dict[str, dict[type, dict[Any, bytes]]], tag: int, key: str, kind: type, value: Any
    ) -> bytes:
        encoded = _field(tag, _key_value(key, value))
        if kind is tuple:
            # Its items' types are part of its key too: (1,) == (1.0,) == (True,) in Python. A
            # tuple holding a tuple would need that at every depth: not cached.
            value_key = (value, *map(type, value))
            if any(issubclass(item_type, tuple) for item_type in value_key[1:]):
                return encoded
        elif kind in (str, bytes) and len(value) > CACHED_VALUE_LIMIT:
            return encoded  # a prompt or an answer (captured content): never seen twice
        else:
            value_key = value
        try:
            hash(value_key)
        except TypeError:
            return encoded  # unhashable: encoded every time, not cached
        if self._cached >= CACHE_LIMIT:
            for cached in self._attributes.values():
                cached.clear()  # in place: callers hold these dicts
            self._cached = 0
        by_key.setdefault(key, {}).setdefault(kind, {})[value_key] = encoded
        self._cached += 1
        return encoded

    def _shared_attributes(self, shared: Mapping[str, Any]) -> bytes:
        """A span's first attributes when the same mapping comes with many spans: written once
        per mapping, keyed by identity (the entry holds the mapping, so its id is not reused)."""
        entry = self._shared.get(id(shared))
        if entry is None:
            if len(self._shared) >= SHARED_LIMIT:
                self._shared.clear()
            entry = self._shared[id(shared)] = (shared, self._attributes_of(_SPAN_ATTRIBUTES, shared))
        return entry[1]

    def _name(self, name: str) -> bytes:
        """The span's name field; names repeat (a route, `chat {model}`), so they are cached too."""
        cached = self._names.get(name)
        if cached is None:
            cached = _field(_SPAN_NAME, name.encode()) if name else b""
            if len(self._names) >= CACHE_LIMIT:
                self._names.clear()
            self._names[name] = cached
        return cached

    def _span(self, span: ReadableSpan) -> bytes:
        """`span_message` of a finished span; context fields are read as the tuple a
        `SpanContext` is (its properties are Python calls)."""
        (context, parent, name, kind, start, end, attributes, dropped_attributes,
         events, dropped_events, links, dropped_links, status) = self._fields(span)  # fmt: skip
        assert context is not None  # a finished span always has one
        if type(context) is _SpanContext:
            trace_id, span_id, _, _, trace_state = context[:5]
        else:
            trace_id, span_id, trace_state = context.trace_id, context.span_id, context.trace_state
        parent_id, parent_is_remote = None, False
        if parent is not None:
            if type(parent) is _SpanContext:
                _, parent_id, parent_is_remote = parent[:3]
            else:
                parent_id, parent_is_remote = parent.span_id, parent.is_remote
        return self.span_message(
            trace_id, span_id, trace_state, parent_id, parent_is_remote, name, kind, start, end,
            attributes, events, status, dropped_attributes, dropped_events, links, dropped_links,
        )  # fmt: skip

    def span_message(
        self,
        trace_id: int,
        span_id: int,
        trace_state: Any,
        parent_id: int | None,
        parent_is_remote: bool,
        name: str,
        kind: _SpanKind,
        start: int | None,
        end: int | None,
        attributes: Mapping[str, Any] | None,
        events: Sequence[Event],
        status: Any,
        dropped_attributes: int = 0,
        dropped_events: int = 0,
        links: Sequence[Any] = (),
        dropped_links: int = 0,
        shared: Mapping[str, Any] | None = None,
    ) -> bytes:
        """One `ScopeSpans.spans` field: tag, length and the span, its parts joined once. From
        a span's fields, so that a span need not be built as a `ReadableSpan` to be exported
        (`spans.SpanStarter`). Raises `UnsupportedValue` for an attribute it cannot write.

        Written for the span Detour finishes thousands of times a second — ids packed in one
        call, constants for the enum members and the usual tail — since its fixed part cost
        as much as a dozen attributes (docs/benchmarks.md)."""
        if parent_id is not None and not trace_state:
            ids = _IDS_AND_PARENT.pack(
                _TRACE_ID_TAG,
                trace_id >> 64,
                trace_id & _LOW64,
                _SPAN_ID_TAG,
                span_id,
                _PARENT_ID_TAG,
                parent_id,
            )
            parts = [ids]
        else:
            parts = [_IDS.pack(_TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, span_id)]
            if trace_state:  # field 3, between the span's id and its parent's
                state = ",".join(f"{k}={v}" for k, v in trace_state.items())
                parts.append(_field(_SPAN_TRACE_STATE, state.encode()))
            if parent_id is not None:
                parts.append(_PARENT_ID_TAG + parent_id.to_bytes(8, "big"))
        parts.append(self._name(name))
        parts.append(
            _SERVER if kind is _SERVER_KIND else _CLIENT if kind is _CLIENT_KIND else _KINDS[kind.value]
        )
        if start and end:
            parts.append(_TIMES.pack(_SPAN_START, start, _SPAN_END, end))
        else:
            if start:
                parts.append(bytes((_SPAN_START,)) + _FIXED64.pack(start))
            if end:
                parts.append(bytes((_SPAN_END,)) + _FIXED64.pack(end))
        if shared:
            parts.append(self._shared_attributes(shared))
        if attributes:
            parts.append(self._attributes_of(_SPAN_ATTRIBUTES, attributes))
        if dropped_attributes:
            parts.append(bytes((_SPAN_DROPPED_ATTRIBUTES,)) + _varint(dropped_attributes))
        for event in events:
            parts.append(_field(_SPAN_EVENTS, self._event(event)))
        if dropped_events:
            parts.append(bytes((_SPAN_DROPPED_EVENTS,)) + _varint(dropped_events))
        for link in links:
            parts.append(_field(_SPAN_LINKS, self._link(link)))
        if dropped_links:
            parts.append(bytes((_SPAN_DROPPED_LINKS,)) + _varint(dropped_links))
        if status is UNSET or _is_unset(status):
            parts.append(_UNSET_REMOTE_PARENT if parent_is_remote else _UNSET_LOCAL_PARENT)
        else:
            parts.append(_field(_SPAN_STATUS, _status(status)))
            parts.append(_REMOTE_PARENT if parent_is_remote else _LOCAL_PARENT)
        body = b"".join(parts)
        size = len(body)
        if size < 0x80:
            return bytes((_SS_SPANS, size)) + body
        if size < 0x4000:  # most spans: a two-byte length
            return bytes((_SS_SPANS, (size & 0x7F) | 0x80, size >> 7)) + body
        return bytes((_SS_SPANS,)) + _varint(size) + body

    def _fields(self, span: ReadableSpan) -> tuple[Any, ...]:
        """What `_span` writes. A `ReadableSpan` itself (what Detour builds) is read from its
        fields: its properties copy the attributes, events and links on every access and cost a
        fifth of the exporter thread's time. Anything else — a subclass, bounded containers whose
        dropped counts matter, a later SDK with other fields — is read through the properties.
        (Attribute by attribute: asking for the instance's `__dict__` would build one per span.)"""
        if type(span) is self._plain_span:
            try:
                attributes, events, links = span._attributes, span._events, span._links
                if type(attributes) in _PLAIN_MAPPINGS and type(events) in _PLAIN and type(links) in _PLAIN:
                    return (span._context, span._parent, span._name, span._kind, span._start_time,
                            span._end_time, attributes, 0, events, 0, links, 0, span._status)  # fmt: skip
            except AttributeError:
                pass
        return (span.context, span.parent, span.name, span.kind, span.start_time, span.end_time,
                span.attributes, span.dropped_attributes, span.events, span.dropped_events, span.links,
                span.dropped_links, span.status)  # fmt: skip

    def _event(self, event: Event) -> bytes:
        body = bytes((_EVENT_TIME,)) + _FIXED64.pack(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _field(_EVENT_NAME, event.name.encode())
        body += self._attributes_of(_EVENT_ATTRIBUTES, event.attributes)
        if event.dropped_attributes:
            body += bytes((_EVENT_DROPPED,)) + _varint(event.dropped_attributes)
        return body

    def _link(self, link: Any) -> bytes:
        context = link.context
        trace_id = context.trace_id  # fields 1 and 2 (no trace state: the library writes none)
        body = _IDS.pack(_TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, context.span_id)
        body += self._attributes_of(_LINK_ATTRIBUTES, link.attributes)
        if link.dropped_attributes:
            body += bytes((_LINK_DROPPED,)) + _varint(link.dropped_attributes)
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if context.is_remote else 0)
        return body + bytes((_LINK_FLAGS,)) + _FIXED32.pack(flags)


def _is_unset(status: Any) -> bool:
    """An unset status without a description, read from its fields when it has them (the
    properties, and the enum's `value`, are Python calls)."""
    fields = getattr(status, "__dict__", None)
    if fields is not None and "_status_code" in fields:
        return fields["_status_code"] is _StatusCode.UNSET and not fields.get("_description")
    return bool(status.status_code.value == 0 and not status.description)


def _status(status: Any) -> bytes:
    if status is None:
        return b""
    body = _field(_STATUS_MESSAGE, status.description.encode()) if status.description else b""
    code = status.status_code.value
    return body + (bytes((_STATUS_CODE, code)) if code else b"")
