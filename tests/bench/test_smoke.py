"""The CI-sized benchmark: Detour as a real subprocess in front of the fast upstream, a few seconds of
load from an in-Python client (no wrk), failing only on gross regressions — a failed request, a
stream that changed on the way, a failover that did not happen, or a number ten times worse than its
docs/architecture.md §7 target (throughput: below a tenth of direct). A second Detour exports
telemetry to an OTLP receiver in its own process, which must get traces and metrics from it.
The full benchmark is `python -m bench`.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.smoke import regressions, render_smoke, run_smoke


@pytest.mark.timeout(120)
def test_the_smoke_benchmark_shows_no_gross_regression() -> None:
    smoke = run_smoke()
    table = render_smoke(smoke)
    print(table)
    assert regressions(smoke) == []
    # The gRPC Proxy scenario ran end to end (its own load generator process) and has its row.
    assert smoke["grpc_rps"] > 0
    assert "| gRPC Proxy: requests/s" in table
    # So did the Detour exporting telemetry: requests through it, and exports at the receiver.
    assert smoke["otel_through_rps"] > 0
    assert smoke["otel_exports"]["/v1/traces"]["requests"] > 0
    assert smoke["otel_exports"]["/v1/metrics"]["requests"] > 0
    assert "| with telemetry: requests/s" in table
    assert "| with telemetry: exports received" in table


HEALTHY: dict[str, Any] = {
    "errors": {},
    "direct_rps": 5000.0,
    "through_rps": 2000.0,
    "added_p50_c1_ms": 0.6,
    "grpc_rps": 900.0,
    "grpc_added_p50_c1_ms": 1.4,
    "sse_added_ms_per_event": 0.01,
    "ready_s": 0.5,
    "idle_rss_mib": 60.0,
    "stream_events_direct": 4040,
    "stream_events_through": 4040,
    "failover_provider": "up-openai",
    "failover_attempts": "2",
    "otel_through_rps": 1000.0,
    "otel_added_p50_c1_ms": 0.8,
    "otel_stream_events": 4040,
    "otel_failover_provider": "up-openai",
    "otel_failover_attempts": "2",
    "otel_exports": {
        "/v1/traces": {"requests": 3, "bytes": 9000},
        "/v1/metrics": {"requests": 1, "bytes": 900},
    },
}


def test_a_tenfold_slowdown_counts_as_a_regression() -> None:
    assert regressions(HEALTHY) == []
    slow = {**HEALTHY, "through_rps": 400.0, "added_p50_c1_ms": 6.0}
    assert len(regressions(slow)) == 2
    slow_grpc = {**HEALTHY, "grpc_rps": 150.0, "grpc_added_p50_c1_ms": 20.0}
    assert len(regressions(slow_grpc)) == 2
    broken = {**HEALTHY, "errors": {"stream": ["HTTP 502"], "grpc": ["UNAVAILABLE: …"]}}
    assert len(regressions(broken | {"failover_attempts": "1"})) == 3


def test_telemetry_on_is_held_to_its_own_gross_bounds() -> None:
    # Ten times the telemetry-on target (0.6 ms), a tenth of Detour without telemetry: just inside,
    # then just outside.
    assert regressions({**HEALTHY, "otel_added_p50_c1_ms": 5.9, "otel_through_rps": 201.0}) == []
    slow = regressions({**HEALTHY, "otel_added_p50_c1_ms": 6.1, "otel_through_rps": 199.0})
    assert len(slow) == 2
    assert any("with telemetry" in problem for problem in slow)
    assert any("otel_added_p50_c1_ms" in problem for problem in slow)
    failed = {**HEALTHY, "errors": {"telemetry-sequential": ["HTTP 502"]}}
    assert regressions(failed) == ["telemetry-sequential: requests failed: ['HTTP 502']"]
    changed = {**HEALTHY, "otel_stream_events": 4000, "otel_failover_provider": "limited"}
    assert len(regressions(changed)) == 2


@pytest.mark.parametrize(
    "exports",
    [{}, {"/v1/traces": {"requests": 2, "bytes": 900}}, {"/v1/metrics": {"requests": 1, "bytes": 90}}],
    ids=["nothing", "no-metrics", "no-traces"],
)
def test_a_receiver_that_got_no_traces_or_no_metrics_is_a_regression(exports: dict[str, Any]) -> None:
    found = regressions({**HEALTHY, "otel_exports": exports})
    assert len(found) == 1
    assert "OTLP receiver got no" in found[0]
