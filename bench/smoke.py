"""The CI-sized benchmark (`python -m bench --smoke`, and `tests/bench/test_smoke.py`): a few seconds,
no wrk, and it fails only on gross regressions — a failed request, or a number ten times worse than
its target (throughput: a tenth of direct; gRPC's, a tenth of HTTP through Detour), so a noisy CI
machine never turns it red by itself.

It runs the same processes as the full benchmark (the fast upstream and a real `detour serve`
subprocess, here serving gRPC too) and drives them with `bench.loadgen`, and gRPC `Gateway.Proxy`
with `bench.grpcload` (its own process); the gRPC added latency is over the direct HTTP call.
A second Detour exports telemetry to an OTLP receiver (`bench.otlp_sink`, its own process): plain
requests, a failover and a short stream through it, and the receiver must get traces and metrics.
"""

from __future__ import annotations

import pathlib
import tempfile
import time
from typing import Any

from bench.grpcload import run_grpc_load
from bench.loadgen import LoadResult, run_load
from bench.otlp_sink import OtlpSink
from bench.procs import Detour, Placement, detour, upstream
from bench.scenarios import ANTHROPIC, FAILOVER, OPENAI, OPENAI_STREAM, Scenario

EVENTS = 200
STREAMS = 20  # sequential streams of EVENTS events, direct and through each Detour
GROSS = 10  # how many times worse than the target (or than direct) counts as a regression
# gRPC has no docs/architecture.md §7 target; its added p50 is bounded at ten times what it measures
# on the build machine (≈ 1.4 ms sequential over the direct HTTP call, Python client included).
GRPC_ADDED_P50_MS = 1.5
OTEL_ADDED_P50_MS = 0.6  # the telemetry-on target (bench.report.TELEMETRY_TARGETS)
EXPORT_PATHS = ("/v1/traces", "/v1/metrics")
EXPORT_WAIT_S = 10.0  # the longest wait for both (metrics are exported every second)


def _load(url: str, scenario: Scenario, **kwargs: Any) -> LoadResult:
    return run_load(url, scenario.body, scenario.headers, **kwargs)


def _exports(sink: OtlpSink, timeout_s: float = EXPORT_WAIT_S) -> tuple[dict[str, dict[str, int]], float]:
    """Poll the receiver until traces and metrics both arrived (or `timeout_s`); its counts, and the wait."""
    started = time.perf_counter()
    while True:
        stats = sink.snapshot()
        waited = time.perf_counter() - started
        if all(stats.get(path, {}).get("requests") for path in EXPORT_PATHS) or waited >= timeout_s:
            return stats, waited
        time.sleep(0.05)


def _with_telemetry(
    proxy: Detour, sink: OtlpSink, direct_p50_ms: float, requests: int, conns: int
) -> dict[str, Any]:
    """Plain requests (throughput, then sequential), failovers and short streams through a Detour
    exporting telemetry, then what its receiver got (the sequential added p50 is over `direct_p50_ms`)."""
    url = OPENAI.detour_url(proxy.url)
    _load(url, OPENAI, total=50, concurrency=conns)  # warm-up
    through = _load(url, OPENAI, total=requests, concurrency=conns)
    sequential = _load(url, OPENAI, total=100, concurrency=1)
    failover = _load(FAILOVER.detour_url(proxy.url), FAILOVER, total=20, concurrency=4)
    stream = _load(
        OPENAI_STREAM.detour_url(proxy.url), OPENAI_STREAM, total=STREAMS, concurrency=1, stream=True
    )
    exports, waited = _exports(sink)
    return {
        "otel_ready_s": proxy.ready_s,
        "otel_through_rps": through.rps,
        "otel_added_p50_c1_ms": sequential.percentile_ms(50) - direct_p50_ms,
        "otel_load_rss_mib": proxy.rss_mib(),
        "otel_stream_events": stream.events,
        "otel_failover_provider": failover.headers.get("x-detour-provider"),
        "otel_failover_attempts": failover.headers.get("x-detour-attempts"),
        "otel_exports": exports,
        "otel_export_wait_s": waited,
        "otel_errors": {
            f"telemetry-{name}": result.errors[:3]
            for name, result in {
                "through": through,
                "sequential": sequential,
                "failover": failover,
                "stream": stream,
            }.items()
            if result.errors
        },
    }


def run_smoke(*, requests: int = 600, concurrency: int = 8) -> dict[str, Any]:
    placement = Placement.default()
    with (
        tempfile.TemporaryDirectory(prefix="detour-smoke-") as tmp,
        upstream(events=EVENTS, cpus=placement.others) as up,
        detour(up.url, pathlib.Path(tmp), cpus=placement.detour, grpc=True) as proxy,
    ):
        time.sleep(0.1)
        idle_rss = proxy.rss_mib()
        # Warm both paths (connection pools, first-call imports) before anything is timed.
        _load(OPENAI.direct_url(up.url), OPENAI, total=50, concurrency=concurrency)
        _load(OPENAI.detour_url(proxy.url), OPENAI, total=50, concurrency=concurrency)
        direct = _load(OPENAI.direct_url(up.url), OPENAI, total=requests, concurrency=concurrency)
        through = _load(OPENAI.detour_url(proxy.url), OPENAI, total=requests, concurrency=concurrency)
        seq_direct = _load(OPENAI.direct_url(up.url), OPENAI, total=100, concurrency=1)
        seq_through = _load(OPENAI.detour_url(proxy.url), OPENAI, total=100, concurrency=1)
        stream_direct = _load(
            OPENAI_STREAM.direct_url(up.url), OPENAI_STREAM, total=STREAMS, concurrency=1, stream=True
        )
        stream_through = _load(
            OPENAI_STREAM.detour_url(proxy.url), OPENAI_STREAM, total=STREAMS, concurrency=1, stream=True
        )
        anthropic = _load(ANTHROPIC.detour_url(proxy.url), ANTHROPIC, total=50, concurrency=4)
        failover = _load(FAILOVER.detour_url(proxy.url), FAILOVER, total=50, concurrency=4)
        grpc_target, others = proxy.grpc_target, placement.others
        grpc_seq = run_grpc_load(grpc_target, OPENAI, calls=100, warmup=20, cpus=others)
        grpc = run_grpc_load(
            grpc_target, OPENAI, concurrency=concurrency, calls=requests, warmup=50, cpus=others
        )
        load_rss = proxy.rss_mib()
        with (
            OtlpSink(others) as sink,
            detour(
                up.url, pathlib.Path(tmp), cpus=placement.detour, env=sink.env(), name="detour-telemetry"
            ) as traced,
        ):
            telemetry = _with_telemetry(
                traced, sink, seq_direct.percentile_ms(50), requests // 2, concurrency
            )
    added_per_event_ms = (stream_through.percentile_ms(50) - stream_direct.percentile_ms(50)) / EVENTS
    errors = telemetry.pop("otel_errors")
    return telemetry | {
        "ready_s": proxy.ready_s,
        "idle_rss_mib": idle_rss,
        "load_rss_mib": load_rss,
        "direct_rps": direct.rps,
        "through_rps": through.rps,
        "added_p50_c1_ms": seq_through.percentile_ms(50) - seq_direct.percentile_ms(50),
        "added_p99_c1_ms": seq_through.percentile_ms(99) - seq_direct.percentile_ms(99),
        "sse_added_ms_per_event": added_per_event_ms,
        "stream_events_direct": stream_direct.events,
        "stream_events_through": stream_through.events,
        "grpc_rps": grpc.rps,
        "grpc_added_p50_c1_ms": grpc_seq.p50_ms - seq_direct.percentile_ms(50),
        "grpc_added_p99_c1_ms": grpc_seq.p99_ms - seq_direct.percentile_ms(99),
        "failover_provider": failover.headers.get("x-detour-provider"),
        "failover_attempts": failover.headers.get("x-detour-attempts"),
        "errors": {
            name: result.errors[:3]
            for name, result in {
                "direct": direct,
                "through": through,
                "sequential": seq_through,
                "stream": stream_through,
                "anthropic": anthropic,
                "failover": failover,
            }.items()
            if result.errors
        }
        | {
            name: result.error_samples or [f"{result.errors} calls failed"]
            for name, result in {"grpc-sequential": grpc_seq, "grpc": grpc}.items()
            if result.errors
        }
        | errors,
    }


def regressions(smoke: dict[str, Any]) -> list[str]:
    """Gross regressions only; an empty list means the smoke run passed."""
    found = [f"{name}: requests failed: {errors}" for name, errors in smoke["errors"].items()]
    if smoke["through_rps"] < smoke["direct_rps"] / GROSS:
        found.append(
            f"throughput through Detour {smoke['through_rps']:.0f} req/s is below a tenth of direct "
            f"({smoke['direct_rps']:.0f} req/s)"
        )
    # A gRPC call costs Detour two to three times an HTTP request's CPU: bound it by HTTP through Detour.
    if smoke["grpc_rps"] < smoke["through_rps"] / GROSS:
        found.append(
            f"gRPC Proxy throughput {smoke['grpc_rps']:.0f} req/s is below a tenth of HTTP through "
            f"Detour ({smoke['through_rps']:.0f} req/s)"
        )
    # Telemetry's own target is CPU per request at most 1.3 times off: bound it by Detour without
    # telemetry in the same run (a busy CI machine slows both alike; direct, in C, far less).
    if smoke["otel_through_rps"] < smoke["through_rps"] / GROSS:
        found.append(
            f"throughput through Detour with telemetry {smoke['otel_through_rps']:.0f} req/s is below a "
            f"tenth of Detour without it ({smoke['through_rps']:.0f} req/s)"
        )
    limits = {
        "added_p50_c1_ms": 0.5 * GROSS,
        "otel_added_p50_c1_ms": OTEL_ADDED_P50_MS * GROSS,
        "grpc_added_p50_c1_ms": GRPC_ADDED_P50_MS * GROSS,
        "sse_added_ms_per_event": 0.1 * GROSS,
        "ready_s": 1.0 * GROSS,
        "idle_rss_mib": 80 * GROSS,
    }
    found += [
        f"{metric} = {smoke[metric]:.3f}, more than {GROSS} times its target ({limit:g})"
        for metric, limit in limits.items()
        if smoke[metric] > limit
    ]
    # Through Detour the client must see the same stream (plus nothing, minus nothing).
    if smoke["stream_events_through"] != smoke["stream_events_direct"]:
        found.append(
            f"stream events differ: {smoke['stream_events_through']} through Detour, "
            f"{smoke['stream_events_direct']} direct"
        )
    if smoke["otel_stream_events"] != smoke["stream_events_direct"]:
        found.append(
            f"stream events differ: {smoke['otel_stream_events']} through Detour with telemetry, "
            f"{smoke['stream_events_direct']} direct"
        )
    for prefix in ("", "otel_"):
        provider, attempts = smoke[f"{prefix}failover_provider"], smoke[f"{prefix}failover_attempts"]
        if provider != "up-openai" or attempts != "2":
            found.append(
                f"failover{' with telemetry' if prefix else ''} answered by {provider!r} after "
                f"{attempts} attempts; expected 'up-openai' after 2"
            )
    missing = [path for path in EXPORT_PATHS if not smoke["otel_exports"].get(path, {}).get("requests")]
    if missing:
        found.append(
            f"the OTLP receiver got no {' and no '.join(missing)} from Detour with telemetry within "
            f"{EXPORT_WAIT_S:g} s (received: {smoke['otel_exports']})"
        )
    return found


def render_smoke(smoke: dict[str, Any]) -> str:
    exports = ", ".join(f"{path}: {v['requests']}" for path, v in sorted(smoke["otel_exports"].items()))
    exports = exports or "nothing"
    return "\n".join(
        [
            "| smoke measure | value |",
            "|---|---|",
            f"| requests/s direct / through Detour (Python client, 8 conns) | "
            f"{smoke['direct_rps']:,.0f} / {smoke['through_rps']:,.0f} |",
            f"| added latency p50 / p99, sequential | {smoke['added_p50_c1_ms']:.3f} / "
            f"{smoke['added_p99_c1_ms']:.3f} ms |",
            f"| gRPC Proxy: requests/s (8 calls) / added p50 / p99, sequential, over direct HTTP | "
            f"{smoke['grpc_rps']:,.0f} / {smoke['grpc_added_p50_c1_ms']:.3f} / "
            f"{smoke['grpc_added_p99_c1_ms']:.3f} ms |",
            f"| added latency per SSE event | {smoke['sse_added_ms_per_event']:.4f} ms |",
            f"| failover answered by | {smoke['failover_provider']} "
            f"({smoke['failover_attempts']} attempts) |",
            f"| RSS idle / after load | {smoke['idle_rss_mib']:.1f} / {smoke['load_rss_mib']:.1f} MiB |",
            f"| process start to /readyz | {smoke['ready_s']:.3f} s |",
            f"| with telemetry: requests/s (8 conns) / added p50, sequential | "
            f"{smoke['otel_through_rps']:,.0f} / {smoke['otel_added_p50_c1_ms']:.3f} ms |",
            f"| with telemetry: failover answered by / stream events | {smoke['otel_failover_provider']} "
            f"({smoke['otel_failover_attempts']} attempts) / {smoke['otel_stream_events']} |",
            f"| with telemetry: exports received (requests per path) | {exports} "
            f"(after {smoke['otel_export_wait_s']:.2f} s of waiting) |",
            f"| with telemetry: RSS after load / process start to /readyz | "
            f"{smoke['otel_load_rss_mib']:.1f} MiB / {smoke['otel_ready_s']:.3f} s |",
        ]
    )
