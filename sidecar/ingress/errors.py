"""The one table that turns a `DetourError` into a response in the client's dialect."""

from __future__ import annotations

import math

from sidecar.dialects import Dialect
from sidecar.dialects.errors import render_error
from sidecar.errors import (
    AllCandidatesFailed,
    AllCandidatesLimited,
    DetourError,
    NoRouteError,
    RequestError,
)


def error_response(dialect: Dialect, exc: DetourError) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for an error raised before any response byte was sent."""
    headers: list[tuple[str, str]] = []
    if isinstance(exc, RequestError):
        return exc.status, headers, render_error(dialect, exc.status, exc.message, param=exc.param)
    if isinstance(exc, NoRouteError):
        return 404, headers, render_error(dialect, 404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, AllCandidatesLimited):
        headers = _retry_after(exc.retry_after_s)
        headers.append(("x-detour-attempts", str(exc.attempts)))
        body = render_error(dialect, 429, str(exc), code="rate_limit_exceeded")
        return 429, headers, body
    if isinstance(exc, AllCandidatesFailed):
        if exc.retry_after_s is not None:
            headers = _retry_after(exc.retry_after_s)
        headers.append(("x-detour-attempts", str(exc.attempts)))
        return exc.status, headers, render_error(dialect, exc.status, str(exc))
    return 500, headers, render_error(dialect, 500, f"internal error: {type(exc).__name__}")


def _retry_after(seconds: float) -> list[tuple[str, str]]:
    return [
        ("retry-after", str(max(math.ceil(seconds), 1))),
        ("retry-after-ms", str(max(math.ceil(seconds * 1000), 1))),
    ]
