"""The one exception tree of Detour.

    DetourError                     anything not below that reaches the edge → 500 (a bug)
    ├── ConfigError                 a config could not be loaded; carries every problem with its path
    ├── RequestError                the client's request is unusable → its own status (400, 413, 499, 503)
    ├── RoutingError
    │   ├── NoRouteError            no rule matches the requested model → 404
    │   ├── AllCandidatesLimited    every candidate is rate-limited → 429 + Retry-After
    │   ├── AllCandidatesFailed     every candidate failed otherwise → 502 (503: circuits open)
    │   └── ResumeRefused           the provider asked to continue a cut stream refused; the client
    │                               gets the original error, in-band
    ├── UpstreamError               one attempt failed; the attempt loop turns these into outcomes
    │   ├── UpstreamTimeout         no answer in time (connect, headers or first token)
    │   ├── UpstreamConnectError    refused, reset or closed before an answer
    │   ├── UpstreamStreamError     a stream broke after it started
    │   └── MalformedAnswer         a 2xx whose body is not an answer of the provider's dialect
    ├── TranslationError            a request or response cannot be expressed in the other dialect
    ├── SseFramingError             a provider's bytes are not SSE (an event that never ends); the
    │                               router treats the stream as broken
    └── KubeError                   the ConfigMap watch cannot go on; the watcher handles these itself
        ├── ConfigMapGone           410 Gone: the resourceVersion is too old; relist
        └── WatchFailed             the API server ended the watch with an error; reconnect, backing off

"→" is what a client gets. The edge renders every error through one table,
`sidecar.ingress.errors.RENDERINGS`, looked up by class along the exception's MRO: status, headers
and the body's `code`/`param`; the body's shape and error type are the client's dialect's
(`sidecar.dialects.errors`).

Foreign exceptions (httpx, aiohttp, yaml, pydantic) are mapped into this tree once, in the adapter
that calls the foreign library, with ``raise … from exc``. The `kubernetes` client's are handled in
`sidecar.kube`, its only caller: the ConfigMap watcher relists or reconnects (and raises and catches
the KubeError branch itself); a failed Event post is only logged.
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
        self.attempts = attempts
        self.retry_after_s = retry_after_s  # set when some candidates are limited or circuits open
        self.status = status


class ResumeRefused(RoutingError):
    """The provider asked to continue a cut stream refused (a 4xx, a refusal, an answer that does
    not begin with the text already sent): the client must get the original error instead."""


class UpstreamError(DetourError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamStreamError(UpstreamError):
    pass


class MalformedAnswer(UpstreamError):
    """A 2xx whose body is not an answer of the provider's dialect (not JSON, or not a chat
    completion / message): a failed attempt, never a success passed on."""


class TranslationError(DetourError):
    pass


class KubeError(DetourError):
    """The ConfigMap watch cannot go on from where it is; the watcher catches these itself."""


class ConfigMapGone(KubeError):
    """410 Gone: the resourceVersion the watch resumes from is too old; relist."""


class WatchFailed(KubeError):
    """The API server ended a watch with an ERROR event other than 410; reconnect after a backoff."""


class SseFramingError(DetourError):
    """Bytes that are not SSE framing (an event that never ends); the router maps it to a broken stream."""
