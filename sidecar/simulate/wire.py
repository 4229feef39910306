"""Vocabulary shared by the two simulated dialects: the prepared answer, the dialect interface, and
the small formats both APIs use (ids, Go durations, RFC 3339 instants, how text is cut into deltas).

The dialect modules are pure (request data in, `Answer` out) so their wire shapes can be checked
without sockets; `server` is the only module that does I/O.
"""

from __future__ import annotations

import math
import random
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sidecar.simulate.behaviours import ErrorReply, RateLimit, Reply, ServerError
from sidecar.simulate.limiter import WindowState


@dataclass(slots=True)
class Answer:
    """A response ready to send: a JSON `body`, or SSE `events` (each one complete frame)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    events: list[bytes] | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A `Reply` resolved against one request: the text (None: no text block) and the model name."""

    reply: Reply
    text: str | None
    model: str
    request: dict[str, Any]
    limits: WindowState | None = None


class Dialect(Protocol):
    """One API's wire format. Every method is pure and returns the answer to send."""

    name: str
    endpoint: str  # the completion path, e.g. "/v1/chat/completions"
    base_path: str  # appended to the origin to form the SDK's base URL

    def authenticate(self, headers: dict[str, str], api_key: str | None) -> Answer | None: ...
    def validate(self, headers: dict[str, str], body: Any) -> Answer | None: ...
    def complete(self, completion: Completion) -> Answer: ...
    def rate_limited(self, behaviour: RateLimit, model: str, limit: int | None = None) -> Answer: ...
    def server_error(self, behaviour: ServerError) -> Answer: ...
    def error(self, behaviour: ErrorReply) -> Answer: ...
    def not_found(self, method: str, path: str) -> Answer: ...
    def models(self, extra_model: str | None) -> Answer: ...


# --- formats ---------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits
_WORDS = re.compile(r"\s*\S+|\s+")

DEFAULT_RESET_S = 60.0


def random_id(prefix: str, length: int) -> str:
    return prefix + "".join(random.choices(_ALNUM, k=length))


def split_words(text: str) -> list[str]:
    """Cut text into word-sized deltas that concatenate back to it ("Hi there" → "Hi", " there")."""
    return _WORDS.findall(text)


def split_fragments(text: str, size: int = 8) -> list[str]:
    """Cut tool-call arguments into fragments, as token-by-token streaming would."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def go_duration(seconds: float) -> str:
    """Format like Go's `time.Duration.String`, as OpenAI's reset headers do: 6m0s, 1.5s, 120ms."""
    if not seconds > 0 or seconds == math.inf:  # a test's NaN or infinite Retry-After: no reset to tell
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_text}"
    if minutes:
        return f"{int(minutes)}m{sec_text}"
    return sec_text


def rfc3339_after(seconds: float) -> str:
    """The wall-clock instant `seconds` from now, as Anthropic's reset headers write it."""
    instant = datetime.now(UTC) + timedelta(seconds=seconds)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def reset_seconds(behaviour: RateLimit) -> float:
    """How long a scripted 429's reset headers say the limit lasts."""
    if behaviour.reset_after_s is not None:
        return behaviour.reset_after_s
    try:
        return float(behaviour.retry_after) if behaviour.retry_after is not None else DEFAULT_RESET_S
    except ValueError:  # an HTTP-date retry-after
        return DEFAULT_RESET_S


_TO_OPENAI = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
_TO_ANTHROPIC = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def openai_finish_reason(reply: Reply) -> str:
    if reply.finish_reason is None:
        return "tool_calls" if reply.tool_call else "stop"
    return _TO_OPENAI.get(reply.finish_reason, reply.finish_reason)


def anthropic_stop_reason(reply: Reply) -> str:
    if reply.finish_reason is None:
        return "tool_use" if reply.tool_call else "end_turn"
    return _TO_ANTHROPIC.get(reply.finish_reason, reply.finish_reason)
