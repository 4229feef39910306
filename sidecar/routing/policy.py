"""What each attempt outcome makes the router do: the outcome → action table of
docs/architecture.md §3.

An attempt that did not answer hands the attempt loop an `AttemptFailure`; `POLICY` says, per
`Outcome`, whether the same candidate is asked again, whether the failure counts toward the
candidate's circuit breaker, and what the request does next. The loop decides from this table
alone (one dict lookup, on failures only): it never looks at status codes or texts.

| outcome           | retry same | circuit | next                                              |
|-------------------|------------|---------|---------------------------------------------------|
| rate_limit        | no         | no      | LIMIT: record the candidate's limit, next at once |
| quota             | no         | no      | LIMIT: record the whole provider's limit          |
| server_error      | yes        | yes     | FAIL_OVER                                         |
| connect_error     | yes        | yes     | FAIL_OVER                                         |
| stream_error      | yes        | yes     | FAIL_OVER                                         |
| timeout           | no         | yes     | FAIL_OVER (a silent provider is not asked again)  |
| malformed_answer  | no         | yes     | FAIL_OVER (a 200 that is not an answer)           |
| translation_error | no         | no      | FAIL_OVER                                         |
| context_length    | no         | no      | FALLBACKS_ONLY: fallbacks of another model        |
| client_error      | no         | no      | RETURN: the provider's 4xx goes to the client     |
| refused           | no         | no      | RETURN: a resume stops; the original error stands |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from sidecar.providers.classify import Outcome


class Next(Enum):
    LIMIT = "limit"
    FAIL_OVER = "fail over"
    FALLBACKS_ONLY = "fallbacks only"
    RETURN = "return"


@dataclass(frozen=True, slots=True)
class Policy:
    next: Next
    retry: bool = False  # ask the same candidate again (`max_retries`, jittered doubling backoff)
    circuit: bool = False  # counts toward the candidate's circuit breaker


POLICY: Mapping[Outcome, Policy] = MappingProxyType(
    {
        Outcome.RATE_LIMITED: Policy(Next.LIMIT),
        Outcome.QUOTA_EXHAUSTED: Policy(Next.LIMIT),
        # A 5xx or a lost connection may be transient: one more try on the same candidate.
        Outcome.SERVER_ERROR: Policy(Next.FAIL_OVER, retry=True, circuit=True),
        Outcome.CONNECT_ERROR: Policy(Next.FAIL_OVER, retry=True, circuit=True),
        Outcome.STREAM_ERROR: Policy(Next.FAIL_OVER, retry=True, circuit=True),
        # A silent provider should not be asked again in this request, but it is failing.
        Outcome.TIMEOUT: Policy(Next.FAIL_OVER, circuit=True),
        # A 200 that is not an answer (a proxy's HTML page, cut JSON) says the provider is broken;
        # asking it again would likely pay for another generation that is lost the same way.
        Outcome.MALFORMED_ANSWER: Policy(Next.FAIL_OVER, circuit=True),
        Outcome.TRANSLATION_ERROR: Policy(Next.FAIL_OVER),
        Outcome.CONTEXT_LENGTH: Policy(Next.FALLBACKS_ONLY),
        Outcome.CLIENT_ERROR: Policy(Next.RETURN),
        Outcome.REFUSED: Policy(Next.RETURN),
    }
)


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """An attempt that did not answer; only `classify`'s outcomes carry the provider's status,
    headers (its rate-limit hints) and error body (a 4xx goes to the client as it is)."""

    outcome: Outcome
    status: int | None = None  # the HTTP status, or the status an error event stood for
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def error_type(self) -> str:
        """Telemetry's `error.type`: the status when there was one ("429"), else the outcome."""
        return str(self.status) if self.status is not None else self.outcome.value
