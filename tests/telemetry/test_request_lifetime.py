"""A settled request's telemetry is freed as soon as the request is: no reference cycle is left for
the cyclic garbage collector, whose collections were most of what it cost with telemetry on."""

from __future__ import annotations

import asyncio
import gc

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sidecar.telemetry import TelemetrySettings
from sidecar.telemetry.hooks import AttemptSpan, RequestSpan
from sidecar.telemetry.runtime import start_telemetry
from sidecar.telemetry.spans import OpenSpan
from tests.telemetry.overhead import Dropped, _run, _sidecar


def test_requests_with_a_failover_leave_no_spans_behind_for_the_collector() -> None:
    telemetry = start_telemetry(
        TelemetrySettings(), span_exporters=[Dropped()], metric_readers=[InMemoryMetricReader()]
    )
    assert telemetry is not None
    sidecar = _sidecar(True, telemetry)  # a 429, then the backup: two attempts, a limit, a failover

    async def requests_then_what_is_alive() -> list[object]:
        await _run(sidecar, 5)
        gc.collect()
        gc.disable()  # only reference counting frees anything from here on
        try:
            await _run(sidecar, 20)
            return [obj for obj in gc.get_objects() if type(obj) in (RequestSpan, AttemptSpan, OpenSpan)]
        finally:
            gc.enable()

    try:
        alive = asyncio.run(requests_then_what_is_alive())
    finally:
        telemetry.shutdown()
    assert alive == []
