"""Protobuf's wire format for OTLP's common messages — varints, length-delimited fields, a
`KeyValue` with its `AnyValue` — as `otlp_encoding.SpanEncoder` writes them: the field chosen for
each Python value exactly as the library's `_encode_value` chooses it (bool before int).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

# Field tags, (field number << 3) | wire type; 0: varint, 1: 64-bit, 2: length-delimited.
_KV_KEY, _KV_VALUE = 0x0A, 0x12
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE, _ANY_ARRAY, _ANY_KVLIST, _ANY_BYTES = (
    0x0A, 0x10, 0x18, 0x21, 0x2A, 0x32, 0x3A,
)  # fmt: skip
_LIST_VALUES = 0x0A  # ArrayValue.values = 1, KeyValueList.values = 1
_DOUBLE = struct.Struct("<d")


class UnsupportedValue(TypeError):
    """An attribute value this encoder does not write; the library's encoder is used instead."""


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An `AnyValue`'s body, as the library's `_encode_value` chooses the field (bool before int)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return bytes((_ANY_BOOL, 1 if value else 0))
    if isinstance(value, str):
        try:
            return field(_ANY_STRING, value.encode())
        except UnicodeEncodeError as exc:  # a lone surrogate: the library drops the attribute
            raise UnsupportedValue("a string that is not valid Unicode") from exc
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise UnsupportedValue("an integer outside int64")
        return bytes((_ANY_INT,)) + varint(value)
    if isinstance(value, float):
        return bytes((_ANY_DOUBLE,)) + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return field(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        return field(_ANY_ARRAY, b"".join(field(_LIST_VALUES, any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(field(_LIST_VALUES, key_value(str(k), v)) for k, v in value.items())
        return field(_ANY_KVLIST, pairs)
    raise UnsupportedValue(f"a value of type {type(value).__name__}")


def key_value(key: str, value: Any) -> bytes:
    key_part = field(_KV_KEY, key.encode()) if key else b""  # proto3: an empty string is not written
    return key_part + field(_KV_VALUE, any_value(value))
