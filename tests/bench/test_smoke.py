"""The CI-sized benchmark: Detour as a real subprocess in front of the fast upstream, a few seconds of
load from an in-Python client (no wrk), failing only on gross regressions — a failed request, a
stream that changed on the way, a failover that did not happen, or a number ten times worse than its
docs/architecture.md §7 target (throughput: below a tenth of direct). The full benchmark is `python -m bench`.
"""

from __future__ import annotations

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


def test_a_tenfold_slowdown_counts_as_a_regression() -> None:
    healthy = {
        "errors": {},
        "direct_rps": 5000.0,
        "through_rps": 2000.0,
        "added_p50_c1_ms": 0.6,
        "grpc_rps": 900.0,
        "grpc_added_p50_c1_ms": 1.4,
        "sse_added_ms_per_event": 0.01,
        "ready_s": 0.5,
        "idle_rss_mib": 60.0,
        "stream_events_direct": 202,
        "stream_events_through": 202,
        "failover_provider": "up-openai",
        "failover_attempts": "2",
    }
    assert regressions(healthy) == []
    slow = {**healthy, "through_rps": 400.0, "added_p50_c1_ms": 6.0}
    assert len(regressions(slow)) == 2
    slow_grpc = {**healthy, "grpc_rps": 150.0, "grpc_added_p50_c1_ms": 20.0}
    assert len(regressions(slow_grpc)) == 2
    broken = {**healthy, "errors": {"stream": ["HTTP 502"], "grpc": ["UNAVAILABLE: …"]}}
    assert len(regressions(broken | {"failover_attempts": "1"})) == 3
