"""Results as a markdown table and JSON, judged against the targets of docs/architecture.md §7.

Kept apart from the measuring code so the table's wording and the targets live in one place, and so
a results JSON from another machine can be re-rendered (`python -m bench --render FILE`).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.procs import ROOT, Placement, cores


def machine_info(placement: Placement) -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cores": cores(),
        "cpu": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit or None,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "detour_cpus": list(placement.detour or ()),
        "load_and_upstream_cpus": list(placement.others or ()),
        "pid": os.getpid(),
    }


@dataclass(frozen=True)
class Target:
    metric: str
    label: str
    limit: float
    unit: str
    at_most: bool = True  # False: the value must be at least `limit`
    # A cost taken as the difference of two runs: below zero, the runs disagree (the machine's
    # speed moved between them) and the value says nothing, so it does not count as met.
    difference: bool = False

    def met(self, value: float) -> bool:
        if self.difference and value < 0:
            return False
        return value <= self.limit if self.at_most else value >= self.limit

    def describe(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {_number(self.limit)} {self.unit}"


TARGETS = (
    Target("added_p50_c1_ms", "added latency p50, sequential", 0.5, "ms"),
    Target("added_p99_c1_ms", "added latency p99, sequential", 2.0, "ms"),
    Target("added_p50_paced_ms", "added latency p50, 16 connections at ~1,000 req/s", 0.5, "ms"),
    Target("added_p99_paced_ms", "added latency p99, 16 connections at ~1,000 req/s", 2.0, "ms"),
    Target("rps_c16", "requests/s on one core, 16 connections", 2000, "req/s", at_most=False),
    Target("rps_c64", "requests/s on one core, 64 connections", 2000, "req/s", at_most=False),
    Target("sse_added_ms_per_event", "added latency per SSE event (200-event stream)", 0.1, "ms"),
    Target(
        "failover_excess_ms", "failover cost beyond one upstream round trip, p50", 0.5, "ms", difference=True
    ),
    Target("idle_rss_mib", "RSS idle", 80, "MiB"),
    Target("ready_s", "process start to /readyz", 1.0, "s"),
)
TIMES = "\N{MULTIPLICATION SIGN}"
# The same Detour exporting telemetry (OTLP/HTTP to a receiver in its own process): its own targets.
TELEMETRY_TARGETS = (
    Target("added_p50_c1_ms", "added latency p50, sequential", 0.6, "ms"),
    Target("added_p99_c1_ms", "added latency p99, sequential", 2.0, "ms"),
    Target("added_p50_paced_ms", "added latency p50, 16 connections at ~1,000 req/s", 0.6, "ms"),
    Target("added_p99_paced_ms", "added latency p99, 16 connections at ~1,000 req/s", 2.0, "ms"),
    Target("rps_c16", "requests/s on one core, 16 connections", 2000, "req/s", at_most=False),
    Target("cpu_ratio_vs_off", "Detour CPU per request, 16 connections, over telemetry off", 1.3, TIMES),
    Target("load_rss_peak_mib", "RSS peak under load (64 connections)", 90, "MiB"),
)
NOT_MEASURED = "not measured in this run"
OTEL = "+otel"  # the run table's suffix for a telemetry run


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _all_runs(results: Mapping[str, Any]) -> dict[str, Any]:
    """The main runs, each telemetry run (`…+otel`) right after the run it mirrors, and the gRPC runs
    right after the HTTP plain (`openai-*`) ones."""
    telemetry: dict[str, Any] = (results.get("telemetry") or {}).get("runs", {})
    runs: dict[str, Any] = {}
    for name, run in results["main"]["runs"].items():
        runs[name] = run
        if name in telemetry:
            runs[name + OTEL] = telemetry[name]
    runs |= {name + OTEL: run for name, run in telemetry.items() if name + OTEL not in runs}
    grpc: dict[str, Any] = (results.get("grpc") or {}).get("runs", {})
    plain = [name for name in runs if name.startswith("openai-")]
    if not grpc or not plain:
        return runs | grpc
    at = list(runs).index(plain[-1]) + 1
    items = list(runs.items())
    return dict(items[:at] + list(grpc.items()) + items[at:])


def _side_by_side(runs: Mapping[str, Any]) -> list[str]:
    lines = [
        _row("run", "conns", "direct req/s", "Detour req/s", "direct p50 / p99", "Detour p50 / p99",
             "Detour CPU/req", "errors"),
        _row(*["---"] * 8),
    ]  # fmt: skip
    for name, run in runs.items():
        direct, through = run["direct"], run["through"]
        cpu = run.get("detour_cpu_us_per_request")
        lines.append(
            _row(
                name,
                str(through["connections"]),
                f"{direct['rps']:,.0f}",
                f"{through['rps']:,.0f}",
                f"{_ms(direct['p50_ms'])} / {_ms(direct['p99_ms'])}",
                f"{_ms(through['p50_ms'])} / {_ms(through['p99_ms'])}",
                f"{cpu:,.0f} µs" if cpu is not None else "-",
                str(through["errors"]),
            )
        )
    return lines


def _header(results: Mapping[str, Any]) -> str:
    machine, settings = results["machine"], results["settings"]
    load = "wrk, the gRPC load generator" if results.get("grpc") else "wrk"
    if machine["detour_cpus"]:
        where = (
            f"Detour pinned to core {machine['detour_cpus']}, "
            f"{load} and the upstream on {machine['load_and_upstream_cpus']}"
        )
    else:
        where = "nothing pinned (one core)"
    return (
        f"Machine: {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}, "
        f"commit {machine['commit']}, {machine['date']}; {where}; {settings['duration_s']:g} s per run; "
        f"stack `{results['label']}`: `{' '.join(settings['detour_command'])}`."
    )


def _target_rows(
    targets: tuple[Target, ...], metrics: Mapping[str, Any], details: Mapping[str, str] | None = None
) -> list[str]:
    """One row per target; a metric missing from `metrics` (an older results file) is not judged."""
    lines = []
    for target in targets:
        value = metrics.get(target.metric)
        if value is None:
            lines.append(_row(target.label, NOT_MEASURED, target.describe(), "-"))
            continue
        met = "yes" if target.met(value) else "**no**"
        measured = f"{_number(value)} {target.unit}" + (details or {}).get(target.metric, "")
        lines.append(_row(target.label, measured, target.describe(), met))
    return lines


def render_markdown(results: Mapping[str, Any]) -> str:
    metrics = results["metrics"]
    lines = [
        _header(results),
        "",
        _row("target (docs/architecture.md §7)", "measured", "target", "met"),
        _row(*["---"] * 4),
    ]
    lines += _target_rows(TARGETS, metrics)
    failover = (
        f"{_ms(metrics['failover_extra_ms'])} "
        f"(one direct 429 round trip: {_ms(metrics['upstream_round_trip_429_ms'])})"
    )
    lines += [
        "",
        _row("other measures", "value"),
        _row("---", "---"),
        _row(
            "added latency p50 / p99, 16 connections unpaced (saturated)",
            f"{_ms(metrics['added_p50_c16_ms'])} / {_ms(metrics['added_p99_c16_ms'])}",
        ),
        _row("requests/s offered by the paced run (through Detour)", f"{metrics['paced_rps']:,.0f}"),
        _row("Detour CPU per request (16 connections)", f"{metrics['cpu_us_per_request']:,.0f} µs"),
        _row(
            "Detour CPU per SSE event (beyond a plain request)", f"{metrics['sse_cpu_us_per_event']:.1f} µs"
        ),
        _row("failover (429 → alternative) minus plain request, p50, sequential", failover),
        _row(
            "failover requests/s and Detour CPU per request, 16 connections",
            f"{metrics['failover_rps_c16']:,.0f} req/s, {metrics['failover_cpu_us_per_request']:,.0f} µs",
        ),
        _row("RSS peak under load (64 connections)", f"{metrics['load_rss_peak_mib']:.1f} MiB"),
        _row(
            "direct requests/s, 16 / 64 connections (upstream and wrk share one core)",
            f"{metrics['direct_rps_c16']:,.0f} / {metrics['direct_rps_c64']:,.0f}",
        ),
        _row("failed requests through Detour", str(metrics["errors"])),
    ]
    lines += ["", *_grpc_lines(results), "", *_telemetry_lines(results)]
    lines += ["", *_side_by_side(_all_runs(results))]
    if results.get("grpc"):
        lines += ["", GRPC_NOTE]
    if (results.get("telemetry") or {}).get("runs"):
        lines += ["", OTEL_NOTE]
    return "\n".join(lines) + "\n"


GRPC_NOTE = (
    "`grpc-proxy-*`: `detour.v1.Gateway/Proxy` with the same OpenAI body, from a grpc.aio client in its own "
    "process (conns: concurrent calls over one channel), through a Detour serving gRPC; *direct* is the "
    "direct HTTP call of the matching `openai-*` run (wrk), the baseline of the gRPC added latency."
)


def _grpc_lines(results: Mapping[str, Any]) -> list[str]:
    """gRPC `Proxy` next to HTTP; both added latencies are over the same direct HTTP call (wrk)."""
    if not results.get("grpc"):
        return ["gRPC `Gateway.Proxy`: not measured (`--no-grpc`, or a stack without gRPC)."]
    m, g = results["metrics"], results["metrics"]["grpc"]

    def pair(source: Mapping[str, Any], low: str, high: str) -> str:
        return f"{_ms(source[low])} / {_ms(source[high])}"

    return [
        _row("gRPC `Gateway.Proxy` next to HTTP (added: through Detour minus the direct HTTP call)",
             "HTTP", "gRPC"),
        _row("---", "---", "---"),
        _row("added latency p50 / p99, sequential",
             pair(m, "added_p50_c1_ms", "added_p99_c1_ms"), pair(g, "added_p50_c1_ms", "added_p99_c1_ms")),
        _row("added latency p50 / p99, 16 connections / calls, paced (16 ms mean pauses)",
             pair(m, "added_p50_paced_ms", "added_p99_paced_ms"),
             pair(g, "added_p50_paced_ms", "added_p99_paced_ms")),
        _row("requests/s served by that paced run", f"{m['paced_rps']:,.0f}", f"{g['paced_rps']:,.0f}"),
        _row("requests/s on one core, 16 connections / concurrent calls",
             f"{m['rps_c16']:,.0f}", f"{g['rps_c16']:,.0f}"),
        _row("Detour CPU per request (16)",
             f"{m['cpu_us_per_request']:,.0f} µs", f"{g['cpu_us_per_request']:,.0f} µs"),
        _row("load generator (its CPU at 16, share of one core)", "wrk",
             f"grpc.aio, own process ({g['client_cpu_share_c16']:.0%})"),
        _row("RSS idle (a Detour serving gRPC: one sample)",
             f"{m['idle_rss_mib']:.1f} MiB", f"{results['grpc']['idle_rss_mib']:.1f} MiB"),
    ]  # fmt: skip


OTEL_NOTE = (
    "`…+otel`: the run above it again, through a second Detour exporting telemetry (OTLP/HTTP to a "
    "receiver in its own process, where wrk runs); *direct* is that run's direct call."
)
OLDER_TELEMETRY = (
    "An older results file: only the plain `openai-*` runs were measured with telemetry exporting, "
    "without the RSS peak under load, and the OTLP receiver then ran inside the harness's own process."
)
TELEMETRY_TITLE = "with telemetry exporting (OTLP/HTTP to a receiver in its own process)"


def _telemetry_lines(results: Mapping[str, Any]) -> list[str]:
    telemetry = results.get("telemetry")
    if telemetry is None:
        return ["Telemetry exporting: not measured (`--no-telemetry`)."]
    if not telemetry["available"]:
        return [
            "Telemetry exporting: **not available**: Detour started with `OTEL_EXPORTER_OTLP_ENDPOINT` "
            "set sent nothing to the OTLP receiver (`bench/otlp_sink.py`)."
        ]
    off, on = results["metrics"], results["metrics"]["telemetry"]
    main_runs = {name: run for name, run in results["main"]["runs"].items() if name in telemetry["runs"]}
    ratio = {}
    if on.get("cpu_pair_on_us") is not None:
        ratio["cpu_ratio_vs_off"] = (
            f" (median of the ratios of {on.get('cpu_pairs', 'the')} alternating pairs; medians "
            f"{on['cpu_pair_on_us']:,.0f} µs on / {on['cpu_pair_off_us']:,.0f} µs off)"
        )
    elif on.get("cpu_ratio_vs_off") is not None:
        ratio["cpu_ratio_vs_off"] = (
            f" ({on['cpu_us_per_request']:,.0f} µs on / {off['cpu_us_per_request']:,.0f} µs off)"
        )
    if on.get("rps_c16_runs"):
        low, high = on["rps_c16_range"]
        ratio["rps_c16"] = (
            f" (median of {on['rps_c16_runs']} runs of 16 connections: the main one, "
            f"{on['rps_c16_single']:,.0f}, and the pairs'; range {low:,.0f} to {high:,.0f})"
        )
    lines = [_row(f"target {TELEMETRY_TITLE}", "measured", "target", "met"), _row(*["---"] * 4)]
    lines += _target_rows(TELEMETRY_TARGETS, on, ratio)

    def both(render: Callable[[Mapping[str, Any]], str], *needs: str) -> tuple[str, str]:
        """The measure off and on; `needs`: the metrics an older results file may lack."""

        def cell(m: Mapping[str, Any]) -> str:
            return render(m) if all(key in m for key in needs) else NOT_MEASURED

        return cell(off), cell(on)

    exports = ", ".join(f"{path}: {v['requests']}" for path, v in sorted(telemetry["exports"].items()))
    rows = {
        "added latency p50 / p99, 16 connections unpaced (saturated)": both(
            lambda m: f"{_ms(m['added_p50_c16_ms'])} / {_ms(m['added_p99_c16_ms'])}"
        ),
        "requests/s, 64 connections": both(lambda m: f"{m['rps_c64']:,.0f}"),
        "requests/s offered by the paced run": both(lambda m: f"{m['paced_rps']:,.0f}"),
        "Detour CPU per request (16 connections)": both(lambda m: f"{m['cpu_us_per_request']:,.0f} µs"),
        "Detour CPU per SSE event (beyond a plain request)": both(
            lambda m: f"{m['sse_cpu_us_per_event']:.1f} µs", "sse_cpu_us_per_event"
        ),
        "added latency per SSE event (200-event stream)": both(
            lambda m: _ms(m["sse_added_ms_per_event"]), "sse_added_ms_per_event"
        ),
        "failover cost beyond one upstream round trip, p50": both(
            lambda m: _ms(m["failover_excess_ms"]), "failover_excess_ms"
        ),
        "failover requests/s and Detour CPU per request, 16 connections": both(
            lambda m: f"{m['failover_rps_c16']:,.0f} req/s, {m['failover_cpu_us_per_request']:,.0f} µs",
            "failover_rps_c16",
        ),
        "RSS idle (off: median of the fresh starts; on: one sample)": both(
            lambda m: f"{m['idle_rss_mib']:.1f} MiB"
        ),
        "process start to /readyz (off: median; on: one start)": both(lambda m: f"{m['ready_s']:.3f} s"),
    }
    failed = [sum(run["through"]["errors"] for run in r.values()) for r in (main_runs, telemetry["runs"])]
    rows["failed requests through Detour (these runs)"] = (str(failed[0]), str(failed[1]))
    lines += ["", _row(f"{TELEMETRY_TITLE}: other measures", "telemetry off", "telemetry on")]
    lines += [_row("---", "---", "---"), *(_row(label, *cells) for label, cells in rows.items())]
    lines.append(_row("exports received (requests per path)", "-", exports))
    if "stream-c1" not in telemetry["runs"]:
        lines += ["", OLDER_TELEMETRY]
    return lines


def write_results(results: Mapping[str, Any], out_dir: pathlib.Path, stem: str = "latest") -> pathlib.Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(render_markdown(results))
    return markdown


def failures(metrics: Mapping[str, Any], check: Callable[[Target, float], bool] | None = None) -> list[str]:
    """Targets not met, as sentences; the telemetry targets' prefixed "with telemetry: "."""
    judge = check or (lambda target, value: target.met(value))
    found = [_failure(t, metrics[t.metric]) for t in TARGETS if not judge(t, metrics[t.metric])]
    on = metrics.get("telemetry") or {}
    return found + [
        "with telemetry: " + _failure(t, on[t.metric])
        for t in TELEMETRY_TARGETS
        if on.get(t.metric) is not None and not judge(t, on[t.metric])
    ]


def _failure(target: Target, value: float) -> str:
    if target.difference and value < 0:
        return (
            f"{target.label}: {_number(value)} {target.unit}, below zero: the two runs it compares disagree"
        )
    return f"{target.label}: {_number(value)} {target.unit} (target {target.describe()})"
