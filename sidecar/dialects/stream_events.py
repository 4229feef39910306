"""What an upstream SSE event means for failover: still preamble, content, the end, or an error.

docs/architecture.md §3: nothing reaches the client before the first content event, so that a failure before
it can fail over transparently. A role-only OpenAI chunk and Anthropic's `message_start`, `ping` and an
empty text `content_block_start` are preamble; a chunk that finishes the answer counts as content
(there is nothing left to fail over for).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.errors import anthropic_status_for
from sidecar.dialects.sse import SseEvent


class EventKind(Enum):
    PREAMBLE = "preamble"
    CONTENT = "content"
    FINISH = "finish"  # the answer is complete (finish_reason / message_delta); also counts as content
    DONE = "done"
    ERROR = "error"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class StreamError:
    """An error the provider sent inside its stream; `status` is the HTTP status it stands for."""

    status: int
    error_type: str
    message: str


def classify_event(dialect: Dialect, event: SseEvent) -> EventKind:
    if dialect is Dialect.ANTHROPIC:
        return _classify_anthropic(event)
    return _classify_openai(event)


def stream_error(dialect: Dialect, event: SseEvent) -> StreamError:
    """The error carried by an event that `classify_event` called ERROR."""
    payload = _loads(event.data)
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return StreamError(500, "api_error", "the provider reported an error in its stream")
    error_type = _text(error.get("type")) or _text(error.get("code")) or "api_error"
    message = _text(error.get("message")) or "the provider reported an error in its stream"
    if dialect is Dialect.ANTHROPIC:
        status = anthropic_status_for(error_type)
    else:
        code = _text(error.get("code"))
        status = 429 if "rate_limit" in code or "rate_limit" in error_type else 500
    return StreamError(status, error_type, message)


def _classify_openai(event: SseEvent) -> EventKind:
    data = event.data
    if data == "[DONE]":
        return EventKind.DONE
    payload = _loads(data)
    if not isinstance(payload, dict):
        return EventKind.MALFORMED
    if payload.get("error"):
        return EventKind.ERROR
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return EventKind.MALFORMED
    for choice in choices:
        if not isinstance(choice, dict):
            return EventKind.MALFORMED
        if choice.get("finish_reason"):
            return EventKind.FINISH
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("refusal")
            or delta.get("function_call")
        ):
            return EventKind.CONTENT
    return EventKind.PREAMBLE


def _classify_anthropic(event: SseEvent) -> EventKind:
    name = event.event
    if name == "ping":
        return EventKind.PREAMBLE
    payload = _loads(event.data)
    if not isinstance(payload, dict):
        return EventKind.MALFORMED
    kind = payload.get("type", name)
    if kind == "error":
        return EventKind.ERROR
    if kind == "message_stop":
        return EventKind.DONE
    if kind == "message_delta":
        return EventKind.FINISH
    if kind == "content_block_delta":
        return EventKind.CONTENT
    if kind == "content_block_start":
        block = payload.get("content_block")
        if isinstance(block, dict) and (block.get("type") != "text" or block.get("text")):
            return EventKind.CONTENT
        return EventKind.PREAMBLE
    # message_start, content_block_stop and event types added to the API later: Anthropic asks
    # clients to tolerate unknown events, so they pass through rather than count as malformed.
    return EventKind.PREAMBLE


def _text(value: Any) -> str:
    """A scalar as text; "" for an empty one and for a list or object, which is no error text and may
    be nested too deeply for `str` to print (Python's recursion limit is below orjson's: `json_out`)."""
    if not value or isinstance(value, list | dict):
        return ""
    return value if isinstance(value, str) else str(value)


def _loads(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
