"""The one table that turns a `DetourError` into a response in the client's dialect.

`RENDERINGS` maps an exception class to how it reaches the client; an exception is rendered by the
first class of its MRO that the table names (as starlette's exception handlers are looked up), so a
subclass without a row of its own is rendered as its parent, and `DetourError` catches the rest.
The body's shape and its error `type` for the status are the dialect's (`sidecar.dialects.errors`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.dialects import Dialect
from sidecar.dialects.errors import render_error
from sidecar.errors import (
    AllCandidatesFailed,
    AllCandidatesLimited,
    DetourError,
    NoRouteError,
    RequestError,
)

Headers = list[tuple[str, str]]


def _no_headers(exc: Any) -> Headers:
    return []


def _retry_headers(exc: AllCandidatesLimited | AllCandidatesFailed) -> Headers:
    """`retry-after` (whole seconds, rounded up) and `retry-after-ms` when something is limited or
    open, and how many upstream requests were made."""
    headers = _retry_after(exc.retry_after_s) if exc.retry_after_s is not None else []
    headers.append(("x-detour-attempts", str(exc.attempts)))
    return headers


def _internal(exc: DetourError) -> str:
    return f"internal error: {type(exc).__name__}"


@dataclass(frozen=True, slots=True)
class Rendering:
    """How one class of error reaches the client. `status` and `param` None: the exception's own
    (`RequestError`, `AllCandidatesFailed` carry a status; `RequestError` a param)."""

    status: int | None = None
    code: str | None = None
    param: str | None = None
    message: Callable[[Any], str] = str
    headers: Callable[[Any], Headers] = _no_headers


RENDERINGS: dict[type, Rendering] = {
    RequestError: Rendering(),  # its own status (400, 413, 499, 503), message and param
    NoRouteError: Rendering(404, code="model_not_found", param="model"),
    AllCandidatesLimited: Rendering(429, code="rate_limit_exceeded", headers=_retry_headers),
    AllCandidatesFailed: Rendering(headers=_retry_headers),  # its own status: 502, or 503 (circuits open)
    DetourError: Rendering(500, message=_internal),  # nothing else should get here
}


def error_response(dialect: Dialect, exc: DetourError) -> tuple[int, Headers, bytes]:
    """(status, headers, body) for an error raised before any response byte was sent."""
    rendering = next(RENDERINGS[cls] for cls in type(exc).__mro__ if cls in RENDERINGS)
    # Only the rows of classes that carry their own status (RequestError, AllCandidatesFailed) leave
    # it None; mypy cannot follow the MRO lookup, and DetourError itself has no `status`.
    status: int = rendering.status or exc.status  # type: ignore[attr-defined]
    param = rendering.param or getattr(exc, "param", None)
    body = render_error(dialect, status, rendering.message(exc), code=rendering.code, param=param)
    return status, rendering.headers(exc), body


def _retry_after(seconds: float) -> Headers:
    return [
        ("retry-after", str(max(math.ceil(seconds), 1))),
        ("retry-after-ms", str(max(math.ceil(seconds * 1000), 1))),
    ]
