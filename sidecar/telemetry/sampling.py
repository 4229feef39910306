"""Sampling that never loses the evidence of a limit: `DETOUR_TRACES_SUCCESS_RATIO` (docs/telemetry.md).

A head sampler decides before anything happened, so `traceidratio` at 0.1 drops nine in ten 429s,
failovers and errors with the plain requests. Detour settles its spans after the response went out
(`hooks`), when the request's story is known, so it can do better at no cost: `KeepEvidence` marks
every span *recorded*, and *sampled* only when it would be kept as a plain success — the caller's
`traceparent` said sampled, or, without a caller's trace, its trace id falls under the ratio (the
`TraceIdRatioBased` rule, so every sidecar of a trace decides alike). When the request settles,
a recorded span that is not sampled is exported anyway if the request had a rate limit, a failover,
a retry, an error or no answer — and dropped, before any of its attributes is built, if it was a
plain success. The upstream `traceparent` carries the sampled flag of the head decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import get_current_span

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes


class KeepEvidence(Sampler):
    """Record everything; say *sampled* for what is kept even as a plain success."""

    def __init__(self, success_ratio: float) -> None:
        self.success_ratio = success_ratio
        self.bound = TraceIdRatioBased.get_bound_for_rate(success_ratio)  # SpanStarter decides with it too

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            sampled = parent.trace_flags.sampled  # the caller's choice (or the request span's, for attempts)
        else:
            sampled = trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.bound
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY
        return SamplingResult(decision, None, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"KeepEvidence{{success_ratio={self.success_ratio}}}"
