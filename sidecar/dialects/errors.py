"""Detour's own errors, rendered in the client's dialect (docs/architecture.md §4).

One table per dialect maps an HTTP status to the error `type` that API uses for it, so the ingress
(whose table, `sidecar.ingress.errors`, picks the status), the router and the stream relay all
produce the shapes the official SDKs parse. A provider's own error bodies are translated, not
rendered: `upstream_errors`.
"""

from __future__ import annotations

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.frames import anthropic_frame, openai_frame

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The status each Anthropic error type stands for, e.g. for an `error` event inside a stream.
_ANTHROPIC_STATUSES = {kind: status for status, kind in sorted(_ANTHROPIC_TYPES.items())}  # 529 over 503
_ANTHROPIC_STATUSES["api_error"] = 500

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}


def error_type_for(dialect: Dialect, status: int) -> str:
    if dialect is Dialect.ANTHROPIC:
        return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def anthropic_status_for(error_type: str) -> int:
    return _ANTHROPIC_STATUSES.get(error_type, 500)


def error_payload(
    dialect: Dialect,
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, object]:
    kind = error_type or error_type_for(dialect, status)
    if dialect is Dialect.ANTHROPIC:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def render_error(
    dialect: Dialect,
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> bytes:
    return orjson.dumps(
        error_payload(dialect, status, message, error_type=error_type, code=code, param=param)
    )


def render_stream_error(
    dialect: Dialect, status: int, message: str, *, error_type: str | None = None
) -> bytes:
    """An in-band SSE error frame: the only honest way to fail once a stream has started."""
    payload = error_payload(dialect, status, message, error_type=error_type)
    if dialect is Dialect.ANTHROPIC:
        return anthropic_frame(b"error", payload)
    return openai_frame(payload)
