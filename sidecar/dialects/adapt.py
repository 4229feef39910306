"""How one request is carried to a provider and back: same dialect passes through, otherwise it is
translated (request, response, stream and errors).

`plan_exchange` is pure and decides everything the attempt needs before any byte is sent, so a
request that cannot be expressed for a provider is skipped without an upstream round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError

DONE_FRAME = b"data: [DONE]\n\n"
MESSAGE_STOP_FRAME = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class StreamConverter(Protocol):
    """Upstream SSE events in, client SSE frames out; `finish` closes a complete stream once."""

    def feed(self, event: SseEvent) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


class PassthroughStream:
    """Same dialect: forward each event's own bytes; add the terminator if the provider left it out."""

    __slots__ = ("_dialect", "_terminated")

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._terminated = False

    def feed(self, event: SseEvent) -> list[bytes]:
        if event.data == "[DONE]" or event.event == "message_stop":
            self._terminated = True
        return [event.encode()]

    def finish(self) -> list[bytes]:
        if self._terminated:
            return []
        self._terminated = True
        return [MESSAGE_STOP_FRAME if self._dialect is Dialect.ANTHROPIC else DONE_FRAME]


@dataclass(frozen=True, slots=True)
class Exchange:
    upstream_body: bytes
    # None means the upstream bytes go to the client unchanged.
    convert_response: Callable[[bytes], bytes] | None
    convert_error: Callable[[int, bytes], tuple[int, bytes]] | None
    new_stream_converter: Callable[[], StreamConverter]


def plan_exchange(
    client: Dialect,
    provider: Dialect,
    *,
    body: dict[str, Any],
    raw: bytes,
    requested_model: str,
    upstream_model: str,
) -> Exchange:
    if client is provider:
        upstream_body = raw if upstream_model == requested_model else _with_model(body, upstream_model)
        return Exchange(upstream_body, None, None, lambda: PassthroughStream(client))
    raise TranslationError(f"translation from {client.value} to {provider.value} is not available")


def _with_model(body: dict[str, Any], model: str) -> bytes:
    return orjson.dumps({**body, "model": model})
