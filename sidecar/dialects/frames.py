"""Stream frames as each dialect writes them, and the JSON object an upstream event carries.

Everything that writes into a client's stream — the stream translators, a same-dialect stream that
lacks its terminator, a resumed stream, an in-band error — writes the same frames: an OpenAI frame
is one unnamed `data:` line, an Anthropic frame names its event type. Each frame is one complete SSE
event (JSON has no raw line breaks, so one data line always suffices).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError

DONE_FRAME = b"data: [DONE]\n\n"
MESSAGE_STOP_FRAME = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def openai_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def anthropic_frame(kind: bytes, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def load_event(event: SseEvent) -> dict[str, Any]:
    """The event's JSON object, or `TranslationError`."""
    try:
        payload = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"stream event is not JSON: {event.data[:80]!r}") from exc
    if not isinstance(payload, dict):
        raise TranslationError(f"stream event is not a JSON object: {event.data[:80]!r}")
    return payload
