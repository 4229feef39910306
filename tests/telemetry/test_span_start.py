"""Starting a span under the default sampler skips the sampler's calls: it must decide exactly as
the sampler would, for every kind of parent."""

from __future__ import annotations

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context
from opentelemetry.trace.span import TraceState

from sidecar.telemetry.runtime import _sampler
from sidecar.telemetry.settings import TelemetrySettings
from sidecar.telemetry.spans import SpanStarter, _is_default_sampler, remote_parent

STATE = TraceState([("vendor", "value")])


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


def _valid(parent: Context | None) -> SpanContext | None:
    return remote_parent(parent) if parent is not None else None


def _starter(sampler: object, *, shortcut: bool) -> SpanStarter:
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)  # type: ignore[arg-type]
    starter = SpanStarter(provider, SynchronousMultiSpanProcessor(), InstrumentationScope("t"))
    starter._follows_parent = shortcut
    return starter


@pytest.mark.parametrize("parent", PARENTS.values(), ids=PARENTS.keys())
def test_the_shortcut_decides_as_the_default_sampler_does(parent: Context | None) -> None:
    sampler = ParentBased(ALWAYS_ON)
    fast = _starter(sampler, shortcut=True).start("s", SpanKind.CLIENT, _valid(parent))
    slow = _starter(sampler, shortcut=False).start("s", SpanKind.CLIENT, _valid(parent))
    assert fast.recording == slow.recording
    assert fast.context.trace_flags == slow.context.trace_flags
    assert fast.context.trace_state == slow.context.trace_state
    assert fast.context.trace_id == slow.context.trace_id or parent is None or parent is PARENTS["invalid"]
    assert fast.parent == slow.parent
    assert not fast.sampler_attributes
    assert not slow.sampler_attributes


def test_only_the_default_sampler_takes_the_shortcut() -> None:
    assert _is_default_sampler(_sampler(TelemetrySettings()))
    assert _is_default_sampler(ParentBased(ALWAYS_ON))
    for other in (
        ALWAYS_ON,
        ParentBased(ALWAYS_OFF),
        ParentBased(TraceIdRatioBased(0.5)),
        ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
        _sampler(TelemetrySettings(success_ratio=0.5)),
        _sampler(TelemetrySettings(sampler="traceidratio", sampler_arg="0.5")),
    ):
        assert not _is_default_sampler(other), other
