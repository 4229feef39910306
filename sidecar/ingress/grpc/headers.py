"""The client's headers of a gRPC call: its metadata, and for `Proxy` its `ProxyRequest.headers`,
read into the same `ClientHeaders` an HTTP request gives (docs/architecture.md §4: a credential in
`authorization` / `x-api-key` is treated exactly as over HTTP, and never logged)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sidecar.dialects import Dialect
from sidecar.providers.client import ClientHeaders


def client_headers(
    dialect: Dialect, metadata: Iterable[Any] | None, extra: Mapping[str, str] | None = None
) -> ClientHeaders:
    """`metadata`: (key, value) pairs as grpc gives them (binary `-bin` values are bytes and are
    never one of the headers read). An entry of `extra` replaces the metadata's of the same name,
    so one credential is forwarded, not two."""
    merged: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            merged[key.lower()] = value
    for key, value in (extra or {}).items():
        merged[key.lower()] = value
    raw: list[tuple[bytes, bytes]] = []
    for key, value in merged.items():
        try:
            raw.append((key.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            continue  # not a value HTTP could carry either: never forwarded
    return ClientHeaders.from_asgi(dialect, raw)
