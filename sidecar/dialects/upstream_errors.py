"""A provider's error body, translated for a client of the other dialect, both ways.

When a candidate of the other dialect answers with an error that goes to the client (a 4xx that is
not failed over), or sends an error inside its stream, the client must still get its own dialect's
shape, which its SDK turns into the right exception. Detour's own errors are rendered, not
translated: `errors`.

Errors keep the upstream status code and message; only the shape and type change. A body that is
not a recognisable error (HTML from a proxy, empty) becomes "upstream provider returned HTTP <status>".

| Anthropic type (status)        | OpenAI type / code                                                |
|--------------------------------|-------------------------------------------------------------------|
| invalid_request_error (400)    | invalid_request_error; code context_length_exceeded when the      |
|                                | message says the prompt is too long                               |
| authentication_error (401)     | invalid_request_error / invalid_api_key                           |
| billing_error (402)            | insufficient_quota / insufficient_quota                           |
| permission_error (403)         | invalid_request_error / permission_denied                         |
| not_found_error (404)          | invalid_request_error / model_not_found (if about a model)        |
| request_too_large (413)        | invalid_request_error / request_too_large                         |
| rate_limit_error (429)         | tokens or requests (as the message says) / rate_limit_exceeded    |
| api_error (500), timeout_error | server_error (code timeout for timeouts)                          |
| overloaded_error (529)         | server_error / overloaded; status stays 529 (OpenAI SDKs treat any|
|                                | 5xx as a retryable server error)                                  |

OpenAI → Anthropic picks the type by status: 400 invalid_request_error, 401 authentication_error,
402 billing_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429
rate_limit_error, 503 and 529 overloaded_error, 504 timeout_error, other 5xx api_error, other 4xx
invalid_request_error. OpenAI's context_length_exceeded message is prefixed "prompt is too long: ",
the words Anthropic clients look for before compacting a conversation. In-band stream errors carry
no status; their type comes from OpenAI's type/code instead (`anthropic_error_type_from_openai`).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.errors import error_type_for

_OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("invalid_request_error", "permission_denied"),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "timeout_error": ("server_error", "timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}
_ANTHROPIC_ERRORS_BY_OPENAI_CODE = {
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "invalid_api_key": "authentication_error",
    "context_length_exceeded": "invalid_request_error",
    "model_not_found": "not_found_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
    "invalid_request_error": "invalid_request_error",
}


def anthropic_error_to_openai(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An upstream Anthropic error body (possibly garbage) → (status, OpenAI error body)."""
    error_type, message, _ = _error_fields(body)
    if error_type not in _OPENAI_ERRORS:
        error_type = error_type_for(Dialect.ANTHROPIC, status)
    return status, {"error": openai_error_object(error_type, message or _generic_message(status))}


def openai_error_object(anthropic_type: str, message: str) -> dict[str, Any]:
    """The OpenAI `error` object for an Anthropic error type and message (also used in streams)."""
    openai_type, code = _OPENAI_ERRORS.get(anthropic_type, ("server_error", None))
    lowered = message.lower()
    if anthropic_type == "rate_limit_error" and "token" in lowered:
        openai_type = "tokens"
    elif anthropic_type == "invalid_request_error" and "prompt is too long" in lowered:
        code = "context_length_exceeded"
    elif anthropic_type == "not_found_error" and "model" in lowered:
        code = "model_not_found"
    return {"message": message, "type": openai_type, "param": None, "code": code}


def openai_error_to_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An upstream OpenAI error body (possibly garbage) → (status, Anthropic error body)."""
    _, message, code = _error_fields(body)
    error_type = error_type_for(Dialect.ANTHROPIC, status)
    message = message or _generic_message(status)
    if code == "context_length_exceeded" and "prompt is too long" not in message.lower():
        message = f"prompt is too long: {message}"
    error = {"type": error_type, "message": message}
    return status, {"type": "error", "error": error}


def anthropic_error_type_from_openai(error: dict[str, Any]) -> str:
    """The Anthropic type for an OpenAI in-band error object, which carries no HTTP status."""
    for key in ("code", "type"):
        value = error.get(key)
        # Only text names a type (str() of a deeply nested list would raise RecursionError).
        found = _ANTHROPIC_ERRORS_BY_OPENAI_CODE.get(value) if isinstance(value, str) else None
        if found:
            return found
    return "api_error"


def _generic_message(status: int) -> str:
    return f"upstream provider returned HTTP {status}"


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(type, message, code) from an error body of either dialect or a common variant; Nones if garbage."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error", payload)
    if isinstance(error, str):
        return None, error or None, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message") or error.get("detail")
    error_type, code = error.get("type"), error.get("code")
    return (
        error_type if isinstance(error_type, str) else None,
        message if isinstance(message, str) and message else None,
        code if isinstance(code, str) else None,
    )
