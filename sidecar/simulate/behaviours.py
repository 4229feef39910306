"""What a simulated provider does with one request, as plain data.

Tests and the demo script a `SimulatedProvider` by queueing behaviours; the dialect modules turn a
behaviour into that API's exact wire shapes and the server performs it. Keeping behaviours as frozen
dataclasses (no methods, no I/O) means one script reads the same for both dialects.

Finish reasons may be given in either dialect's words (`"stop"`/`"end_turn"`, `"length"`/
`"max_tokens"`, `"tool_calls"`/`"tool_use"`); the responding dialect translates them. Anything else
(e.g. `"content_filter"`) is sent verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

# --- success ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call in the reply. `id` defaults to a fresh id in the dialect's form."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful completion, streamed as SSE when the request says `"stream": true`.

    `text=None` means the provider's `reply_text`, unless there is a `tool_call` (then no text).
    `usage` is (input tokens, output tokens).
    """

    text: str | None = None
    tool_call: ToolCall | None = None
    finish_reason: str | None = None
    usage: tuple[int, int] = (12, 7)
    headers: dict[str, str] = field(default_factory=dict)


# --- errors the real APIs send ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimit:
    """HTTP 429 in the dialect's shape, with its rate-limit headers (remaining 0).

    `retry_after` becomes the `retry-after` header verbatim (None: no such header). The reset
    headers say `reset_after_s` seconds, or `retry_after` when that is a number, else 60 s;
    `limit_headers=False` leaves them out (so a client must fall back to its own backoff).
    `quota=True` is OpenAI's `insufficient_quota` (for Anthropic, a rate_limit_error all the same).
    `headers` adds or overrides response headers.
    """

    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    quota: bool = False
    reset_after_s: float | None = None
    limit_headers: bool = True


@dataclass(frozen=True, slots=True)
class ServerError:
    """A 5xx: OpenAI `server_error`; Anthropic `api_error`, or `overloaded_error` for 529.

    `message=None` uses the dialect's own wording for that status.
    """

    status: int = 500
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Any error status in the dialect's shape, e.g. OpenAI 400 `context_length_exceeded`.

    `code` and `param` only exist in OpenAI's shape; Anthropic's body carries `type` and `message`.
    """

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None


# --- faults: transport-level misbehaviour -----------------------------------------------------------
# New fault behaviours go here, then into `Behaviour` below and `server._perform`.


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait `seconds` before doing `then` (nothing is sent meanwhile: no headers, no bytes)."""

    seconds: float
    then: Behaviour


CutHow = Literal["close", "reset", "hang", "end"]


@dataclass(frozen=True, slots=True)
class CutStream:
    """Send the first `after_events` SSE events of `reply`, then misbehave.

    `how`: "close" shuts the connection mid-body (an incomplete chunked read), "reset" sends a TCP
    RST, "hang" stalls until the client gives up or the provider stops, "end" finishes the HTTP
    response cleanly without the remaining events (no `[DONE]` / `message_stop`). A non-streaming
    request gets half of its JSON body instead of `after_events` events.
    """

    after_events: int
    reply: Reply | None = None
    how: CutHow = "close"


@dataclass(frozen=True, slots=True)
class Hang:
    """Accept the request and never answer (until the client gives up or the provider stops)."""


@dataclass(frozen=True, slots=True)
class ResetConnection:
    """Drop the connection with a TCP RST before any response byte."""


@dataclass(frozen=True, slots=True)
class SlowStream:
    """Stream `reply` with the headers at once, then `first_event_delay_s` before the first event and
    `between_events_s` between the others: a slow first token, or a stall mid-stream."""

    first_event_delay_s: float = 0.0
    between_events_s: float = 0.0
    reply: Reply | None = None
    stall_after_events: int | None = None  # then wait `stall_s` once, before the next event
    stall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    """Stream `reply` with one event that is not valid JSON after the first `after_events` events."""

    after_events: int
    reply: Reply | None = None
    garbage: bytes = b"data: {this is not json\n\n"


Behaviour: TypeAlias = (
    Reply
    | RateLimit
    | ServerError
    | ErrorReply
    | Delay
    | CutStream
    | Hang
    | ResetConnection
    | SlowStream
    | MalformedEvent
)
