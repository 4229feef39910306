"""The one exception tree of Detour.

    DetourError
    ├── ConfigError                 a config could not be loaded; carries every problem with its path
    ├── RequestError                the client's request is unusable (bad JSON, wrong field) → 400
    ├── RoutingError
    │   ├── NoRouteError            no rule matches the requested model → 404
    │   ├── AllCandidatesLimited    every candidate is rate-limited → 429 + Retry-After
    │   └── AllCandidatesFailed     every candidate failed otherwise → 502 (503: circuits open)
    ├── UpstreamError               one attempt failed; the attempt loop turns these into outcomes
    │   ├── UpstreamTimeout         no answer in time (connect, headers or first token)
    │   ├── UpstreamConnectError    refused, reset or closed before an answer
    │   └── UpstreamStreamError     a stream broke after it started
    └── TranslationError            a request or response cannot be expressed in the other dialect

Foreign exceptions (httpx, aiohttp, yaml, pydantic) are mapped into this tree once, in the adapter
that calls the foreign library, with ``raise … from exc``. Each edge renders them through one table
(`sidecar.dialects.errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class DetourError(Exception):
    """Root of every error Detour raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a config, named by its path (``routing.rules[2].strategy``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(DetourError):
    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class RequestError(DetourError):
    """The client sent something Detour cannot route; the message is shown to the client."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


class RoutingError(DetourError):
    pass


class NoRouteError(RoutingError):
    def __init__(self, model: str) -> None:
        super().__init__(f"no routing rule matches model '{model}'")
        self.model = model


class AllCandidatesLimited(RoutingError):
    """Every candidate is rate-limited; `retry_after_s` is the soonest expiry from now."""

    def __init__(self, retry_after_s: float, attempts: int) -> None:
        super().__init__(f"all candidates are rate-limited; retry after {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s
        self.attempts = attempts


class AllCandidatesFailed(RoutingError):
    def __init__(
        self, reasons: Sequence[str], attempts: int, retry_after_s: float | None = None, *, status: int = 502
    ) -> None:
        summary = "; ".join(reasons) if reasons else "no candidate could be tried"
        super().__init__(f"every candidate failed: {summary}")
        self.reasons = tuple(reasons)
        self.attempts = attempts
        self.retry_after_s = retry_after_s  # set when some candidates are limited or circuits open
        self.status = status


class UpstreamError(DetourError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamStreamError(UpstreamError):
    pass


class TranslationError(DetourError):
    pass
