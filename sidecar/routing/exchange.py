"""The request the router receives and the response it hands back, free of any HTTP framework.

Both ingresses (ASGI, `ingress/grpc`) build an `InboundRequest` and render a `RoutedResponse`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.dialects import Dialect
from sidecar.providers.client import ClientHeaders


@dataclass(frozen=True, slots=True)
class InboundRequest:
    dialect: Dialect
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    headers: ClientHeaders


@dataclass(slots=True)
class RoutedResponse:
    """What the client gets: a whole body, or an SSE stream whose first content already arrived."""

    status: int
    content_type: str
    provider_id: str
    model: str
    attempts: int = 0
    body: bytes = b""
    stream: AsyncGenerator[bytes, None] | None = None  # closed with `aclose` when the client is done
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Frees the upstream connection even if `stream` was never iterated (the client left before
    # the first byte): closing a generator that never started does not run its cleanup.
    release: Callable[[], Awaitable[None]] | None = None
