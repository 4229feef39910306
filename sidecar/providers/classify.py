"""What an upstream answer means for the attempt loop (docs/architecture.md §3, "Outcome").

A pure function of (dialect, status, error body): the router never looks at status codes or error
bodies itself. Both APIs' real error shapes are recognised:
OpenAI  ``{"error": {"message", "type", "param", "code"}}`` and
Anthropic ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import orjson

from sidecar.config.models import ProviderType


class Outcome(Enum):
    """How one upstream attempt ended. The router's policy tables key on the members (identity
    checks, no text); a value is the text shown for it at the edges — the `detour.reason` and
    `error.type` of telemetry, the reasons of a 502 — and must not change."""

    OK = "ok"
    # From the provider's answer (`classify`): an HTTP error status, or an error event in a stream.
    RATE_LIMITED = "rate_limit"  # 429: limit this candidate, fail over at once
    QUOTA_EXHAUSTED = "quota"  # 429 insufficient_quota: limit the whole provider
    SERVER_ERROR = "server_error"  # 5xx, 408, Anthropic 529: fail over
    CONTEXT_LENGTH = "context_length"  # prompt too long: only the rule's fallbacks may help
    CLIENT_ERROR = "client_error"  # any other 4xx: the client's problem, returned as is
    # From how the attempt went (the attempt loop maps `sidecar.errors` to these).
    TIMEOUT = "timeout"  # no headers, or no first content event, in time
    CONNECT_ERROR = "connect_error"  # refused, reset or closed before an answer
    STREAM_ERROR = "stream_error"  # the body broke or ended before its first content event
    MALFORMED_ANSWER = "malformed_answer"  # a 2xx whose body is not an answer of its dialect
    TRANSLATION_ERROR = "translation_error"  # the answer could not be put in the client's dialect
    REFUSED = "refused"  # a continuation of a cut stream that cannot be spliced on (resume only)


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The provider's own description of an error, for logs and for the client."""

    error_type: str
    code: str | None
    message: str


_CONTEXT_LENGTH_PHRASES = ("prompt is too long", "exceed context limit", "context window", "context length")


def parse_error_body(body: bytes) -> ProviderError:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        snippet = body[:200].decode("utf-8", errors="replace").strip()
        return ProviderError("unknown", None, snippet or "the provider gave no error details")
    code = error.get("code")
    return ProviderError(
        error_type=str(error.get("type") or "unknown"),
        code=str(code) if code is not None else None,
        message=str(error.get("message") or ""),
    )


def classify(dialect: ProviderType, status: int, error: ProviderError | None) -> Outcome:
    """One of OK and the first group of `Outcome` (the answer's own meaning)."""
    if status < 400:
        return Outcome.OK
    if status == 429:
        if error is not None and "insufficient_quota" in (error.code, error.error_type):
            return Outcome.QUOTA_EXHAUSTED
        return Outcome.RATE_LIMITED
    if status >= 500 or status == 408:
        return Outcome.SERVER_ERROR
    if status in (400, 413) and error is not None and _is_context_length(dialect, error):
        return Outcome.CONTEXT_LENGTH
    return Outcome.CLIENT_ERROR


def _is_context_length(dialect: ProviderType, error: ProviderError) -> bool:
    if dialect is ProviderType.OPENAI and error.code == "context_length_exceeded":
        return True
    message = error.message.lower()
    return any(phrase in message for phrase in _CONTEXT_LENGTH_PHRASES)
