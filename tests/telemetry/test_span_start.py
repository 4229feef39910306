"""Starting a span under the default sampler or `KeepEvidence` skips the sampler's calls: it must
decide exactly as the sampler would, for every kind of parent and for root spans on either side of
the ratio's bound."""

from __future__ import annotations

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context
from opentelemetry.trace.span import TraceState

from sidecar.telemetry.runtime import _sampler
from sidecar.telemetry.sampling import KeepEvidence
from sidecar.telemetry.settings import TelemetrySettings
from sidecar.telemetry.spans import SpanStarter, inline_decision, remote_parent

STATE = TraceState([("vendor", "value")])
LOW_TRACE_ID = 0x4BF92F3577B34DA6_0000000000000001  # lower 64 bits tiny: under any ratio's bound
HIGH_TRACE_ID = 0x4BF92F3577B34DA6_FFFFFFFFFFFFFFF0  # lower 64 bits near the top: over 0.5's bound


def _parent(*, remote: bool, sampled: bool, valid: bool = True) -> Context:
    context = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736 if valid else 0,
        0x00F067AA0BA902B7 if valid else 0,
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        trace_state=STATE,
    )
    return set_span_in_context(NonRecordingSpan(context))


PARENTS = {
    "none": None,
    "remote sampled": _parent(remote=True, sampled=True),
    "remote not sampled": _parent(remote=True, sampled=False),
    "local sampled": _parent(remote=False, sampled=True),
    "local not sampled": _parent(remote=False, sampled=False),
    "invalid": _parent(remote=True, sampled=True, valid=False),
}
SAMPLERS = {
    "parentbased_always_on": ParentBased(ALWAYS_ON),
    "success ratio 0.5": KeepEvidence(0.5),
    "success ratio 0": KeepEvidence(0.0),
}


class FixedTraceId(RandomIdGenerator):
    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id

    def generate_trace_id(self) -> int:
        return self.trace_id


def _starter(sampler: Sampler, trace_id: int, *, inline: bool) -> SpanStarter:
    provider = TracerProvider(sampler=sampler, id_generator=FixedTraceId(trace_id), shutdown_on_exit=False)
    starter = SpanStarter(provider, SynchronousMultiSpanProcessor(), InstrumentationScope("t"))
    if not inline:
        starter._inline = None
    return starter


def _valid(parent: Context | None) -> SpanContext | None:
    return remote_parent(parent) if parent is not None else None


@pytest.mark.parametrize("trace_id", [LOW_TRACE_ID, HIGH_TRACE_ID], ids=["low id", "high id"])
@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
@pytest.mark.parametrize("parent", PARENTS.values(), ids=PARENTS.keys())
def test_the_inline_decision_is_the_samplers(parent: Context | None, sampler: Sampler, trace_id: int) -> None:
    fast = _starter(sampler, trace_id, inline=True).start("s", SpanKind.CLIENT, _valid(parent))
    slow = _starter(sampler, trace_id, inline=False).start("s", SpanKind.CLIENT, _valid(parent))
    assert fast.recording == slow.recording
    assert fast.context.trace_flags == slow.context.trace_flags
    assert fast.context.trace_state == slow.context.trace_state
    assert fast.context.trace_id == slow.context.trace_id
    assert fast.parent == slow.parent
    assert not fast.sampler_attributes
    assert not slow.sampler_attributes


def test_both_sides_of_the_bound_are_exercised() -> None:
    # Otherwise the comparison above could pass with the ratio never deciding anything.
    decisions = {
        trace_id: _starter(KeepEvidence(0.5), trace_id, inline=True).start("s", SpanKind.SERVER, None).sampled
        for trace_id in (LOW_TRACE_ID, HIGH_TRACE_ID)
    }
    assert decisions == {LOW_TRACE_ID: True, HIGH_TRACE_ID: False}


def test_only_the_default_sampler_and_keep_evidence_are_decided_inline() -> None:
    every_root = TraceIdRatioBased.get_bound_for_rate(1.0)
    assert inline_decision(_sampler(TelemetrySettings())) == (False, every_root)
    assert inline_decision(_sampler(TelemetrySettings(success_ratio=0.5))) == (True, KeepEvidence(0.5).bound)
    for other in (
        ALWAYS_ON,
        ParentBased(ALWAYS_OFF),
        ParentBased(TraceIdRatioBased(0.5)),
        ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
        _sampler(TelemetrySettings(sampler="traceidratio", sampler_arg="0.5")),
    ):
        assert inline_decision(other) is None, other


def test_finished_spans_reach_every_processor_including_ones_added_later() -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    batched, simple, later = InMemorySpanExporter(), InMemorySpanExporter(), InMemorySpanExporter()
    processors = SynchronousMultiSpanProcessor()
    processors.add_span_processor(BatchSpanProcessor(batched))  # straight to its queue
    processors.add_span_processor(SimpleSpanProcessor(simple))  # through its `on_end`
    starter = SpanStarter(TracerProvider(shutdown_on_exit=False), processors, InstrumentationScope("t"))
    starter.start("first", SpanKind.SERVER, None).finish({})
    processors.add_span_processor(SimpleSpanProcessor(later))
    server = starter.start("second", SpanKind.SERVER, None)
    starter.start("child", SpanKind.CLIENT, server).finish({})
    server.finish({})
    processors.force_flush()
    assert [span.name for span in batched.get_finished_spans()] == ["first", "child", "second"]
    assert [span.name for span in simple.get_finished_spans()] == ["first", "child", "second"]
    assert [span.name for span in later.get_finished_spans()] == ["child", "second"]
    child, second = later.get_finished_spans()
    assert child.parent == second.context
    assert child.context.trace_id == second.context.trace_id
    processors.shutdown()


def test_a_single_processor_that_is_not_a_multi_processor_gets_every_span() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    starter = SpanStarter(
        TracerProvider(shutdown_on_exit=False), SimpleSpanProcessor(exported), InstrumentationScope("t")
    )
    starter.start("only", SpanKind.SERVER, None).finish({})
    assert [span.name for span in exported.get_finished_spans()] == ["only"]


def test_a_span_with_invalid_ids_sends_no_trace_context_upstream() -> None:
    starter = _starter(ParentBased(ALWAYS_ON), 0, inline=True)  # an id generator that gives trace id 0
    assert starter.start("s", SpanKind.CLIENT, None).trace_headers() == []
    valid = _starter(ParentBased(ALWAYS_ON), LOW_TRACE_ID, inline=True).start("s", SpanKind.CLIENT, None)
    assert valid.trace_headers()[0][1].startswith(f"00-{LOW_TRACE_ID:032x}-")
