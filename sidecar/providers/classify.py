"""What an upstream answer means for the attempt loop (SPEC §3, "Outcome").

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
    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429: limit this candidate, fail over at once
    QUOTA_EXHAUSTED = "quota"  # 429 insufficient_quota: limit the whole provider
    SERVER_ERROR = "server_error"  # 5xx, 408, Anthropic 529: fail over
    CONTEXT_LENGTH = "context_length"  # prompt too long: only the rule's fallbacks may help
    CLIENT_ERROR = "client_error"  # any other 4xx: the client's problem, returned as is


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
