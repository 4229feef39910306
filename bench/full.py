"""The full benchmark (`python -m bench`): wrk against the fast upstream directly and through Detour,
side by side, same concurrency, same requests, then every docs/architecture.md §7 number in one results dict.

Placement (two cores or more): Detour is pinned to one core of its own, so its throughput is a
one-core number; wrk and the upstream share the other core. Each pair runs direct first, then
through Detour, after a warm-up of both. Detour's CPU time (from /proc) is read around each run,
which gives the CPU cost per request and per SSE event independently of wrk's clock.
"""

from __future__ import annotations

import contextlib
import pathlib
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.grpcload import run_grpc_load
from bench.otlp_sink import OtlpSink
from bench.procs import Detour, Placement, Upstream, detour, upstream
from bench.report import machine_info
from bench.scenarios import ANTHROPIC, FAILOVER, OPENAI, OPENAI_STREAM, Scenario
from bench.wrk import INSTALL_HINT, WrkResult, find_wrk, run_wrk, write_script

SCENARIOS = (OPENAI, OPENAI_STREAM, ANTHROPIC, FAILOVER)
# "Moderate load" (docs/architecture.md §7): 16 connections offering about 1,000 requests/s, half the
# one-core target, so latency is measured below saturation; the unpaced 16-connection run shows saturation.
PACED = "openai-paced"
PACED_CONNECTIONS = 16
PACED_RPS = 1000
PACED_DELAY_MS = round(PACED_CONNECTIONS * 1000 / PACED_RPS)  # each connection's mean pause
# Every scenario again through a Detour exporting telemetry, each mirroring the main run of the same
# name (whose direct call is its baseline): (name, scenario, connections, script).
TELEMETRY_RUNS = (
    ("openai-c1", OPENAI, 1, ""),
    ("openai-c16-paced", OPENAI, PACED_CONNECTIONS, PACED),
    ("openai-c16", OPENAI, 16, ""),
    ("openai-c64", OPENAI, 64, ""),
    ("stream-c1", OPENAI_STREAM, 1, ""),
    ("stream-c16", OPENAI_STREAM, 16, ""),
    ("failover-c1", FAILOVER, 1, ""),
    ("failover-c16", FAILOVER, 16, ""),
)
TELEMETRY_SCENARIOS = (OPENAI, OPENAI_STREAM, FAILOVER)
# gRPC `Gateway.Proxy` with the plain OpenAI body, mirroring the HTTP plain runs it is shown next to:
# (name, the HTTP run whose direct call is its baseline, concurrent calls, mean pause per worker).
GRPC_RUNS = (
    ("grpc-proxy-c1", "openai-c1", 1, 0),
    ("grpc-proxy-c16-paced", "openai-c16-paced", PACED_CONNECTIONS, PACED_DELAY_MS),
    ("grpc-proxy-c16", "openai-c16", 16, 0),
)
GRPC_WARMUP_CALLS = 32  # per run, untimed: the load generator's channel and first calls
CPU_PAIRS = 7  # alternating telemetry off / on runs for the CPU ratio: the median of their ratios


@dataclass(frozen=True)
class Settings:
    duration_s: float = 5.0
    warmup_s: float = 1.0
    events: int = 200
    startups: int = 5
    telemetry: bool = True
    grpc: bool = True  # the gRPC Proxy runs (a stack that serves gRPC only)
    detour_command: Sequence[str] | None = None  # an alternative stack, same config and CLI flags
    label: str = "detour"


class Bench:
    """One upstream, scripts for every scenario, and helpers that run wrk with the right placement."""

    def __init__(
        self, wrk: str, up: Upstream, work: pathlib.Path, placement: Placement, settings: Settings
    ) -> None:
        self.wrk, self.up, self.work, self.placement, self.settings = wrk, up, work, placement, settings
        self.scripts = {s.name: write_script(work / f"{s.name}.lua", s.body, s.headers) for s in SCENARIOS}
        # 16 connections, each pausing so that together they offer about PACED_RPS requests/s.
        paced = write_script(work / "paced.lua", OPENAI.body, OPENAI.headers, delay_ms=PACED_DELAY_MS)
        self.scripts[PACED] = paced

    def wrk_run(
        self,
        url: str,
        scenario: Scenario,
        connections: int,
        duration_s: float | None = None,
        script: str = "",
    ) -> WrkResult:
        return run_wrk(
            self.wrk,
            url,
            self.scripts[script or scenario.name],
            connections=connections,
            duration_s=duration_s or self.settings.duration_s,
            cpus=self.placement.others,
        )

    def direct(self, scenario: Scenario, connections: int, script: str = "") -> WrkResult:
        return self.wrk_run(scenario.direct_url(self.up.url), scenario, connections, script=script)

    def through(
        self, proxy: Detour, scenario: Scenario, connections: int, script: str = ""
    ) -> tuple[WrkResult, float]:
        """wrk through Detour, and Detour's CPU seconds spent during the run."""
        cpu_before = proxy.cpu_s()
        result = self.wrk_run(scenario.detour_url(proxy.url), scenario, connections, script=script)
        return result, proxy.cpu_s() - cpu_before

    def warm_up(self, proxy: Detour, scenarios: Sequence[Scenario], *, direct: bool = True) -> None:
        for scenario in scenarios:
            if direct:
                self.wrk_run(scenario.direct_url(self.up.url), scenario, 16, self.settings.warmup_s)
            self.wrk_run(scenario.detour_url(proxy.url), scenario, 16, self.settings.warmup_s)

    def start(
        self, name: str, env: Mapping[str, str] | None = None, *, grpc: bool = False
    ) -> contextlib.AbstractContextManager[Detour]:
        return detour(
            self.up.url,
            self.work,
            cpus=self.placement.detour,
            env=env,
            command=self.settings.detour_command,
            name=name,
            grpc=grpc,
        )


@contextlib.contextmanager
def sampling_rss(proxy: Detour, every_s: float = 0.05) -> Iterator[list[float]]:
    """Sample Detour's RSS in a thread while the block runs (the peak under load)."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(OSError, ValueError):
                samples.append(proxy.rss_mib())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=2)


def run_full(settings: Settings) -> dict[str, Any]:
    wrk = find_wrk()
    if wrk is None:
        raise SystemExit(INSTALL_HINT)
    placement = Placement.default()
    results: dict[str, Any] = {
        "machine": machine_info(placement),
        "label": settings.label,
        "settings": {
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "events": settings.events,
            "detour_command": list(settings.detour_command or ["python", "-m", "sidecar.cli.main"]),
        },
    }
    with tempfile.TemporaryDirectory(prefix="detour-bench-") as tmp:
        work = pathlib.Path(tmp)
        with upstream(events=settings.events, cpus=placement.others) as up:
            bench = Bench(wrk, up, work, placement, settings)
            results["startup"] = measure_startup(bench)
            with bench.start("detour") as proxy:
                results["main"] = measure_main(bench, proxy)
                if settings.telemetry:  # the plain Detour stays up (idle) for the CPU pairs
                    results["telemetry"] = measure_telemetry(bench, results["main"], proxy)
            if settings.grpc:
                results["grpc"] = measure_grpc(bench, results["main"])
    results["metrics"] = derive_metrics(results, settings.events)
    return results


def measure_startup(bench: Bench) -> dict[str, Any]:
    """Process start (fork/exec of the interpreter) to the first 200 from /readyz, several times."""
    times: list[float] = []
    rss: list[float] = []
    for index in range(bench.settings.startups):
        with bench.start(f"startup-{index}") as proxy:
            times.append(proxy.ready_s)
            time.sleep(0.2)  # let start-up garbage settle before reading idle RSS
            rss.append(proxy.rss_mib())
    return {
        "ready_s": times,
        "ready_median_s": statistics.median(times),
        "idle_rss_mib": rss,
        "idle_rss_median_mib": statistics.median(rss),
    }


def _pair(
    bench: Bench, proxy: Detour, scenario: Scenario, connections: int, script: str = ""
) -> dict[str, Any]:
    direct = bench.direct(scenario, connections, script)
    through, cpu_s = bench.through(proxy, scenario, connections, script)
    return {
        "direct": direct.as_dict(),
        "through": through.as_dict(),
        "detour_cpu_s": round(cpu_s, 3),
        "detour_cpu_us_per_request": round(cpu_s / through.requests * 1e6, 1) if through.requests else None,
    }


def measure_main(bench: Bench, proxy: Detour) -> dict[str, Any]:
    main: dict[str, Any] = {"ready_s": proxy.ready_s}
    time.sleep(0.2)
    main["idle_rss_mib"] = proxy.rss_mib()
    bench.warm_up(proxy, SCENARIOS)
    runs: dict[str, Any] = {}
    runs["openai-c1"] = _pair(bench, proxy, OPENAI, 1)
    runs["openai-c16-paced"] = _pair(bench, proxy, OPENAI, PACED_CONNECTIONS, PACED)
    runs["openai-c16"] = _pair(bench, proxy, OPENAI, 16)
    with sampling_rss(proxy) as samples:
        runs["openai-c64"] = _pair(bench, proxy, OPENAI, 64)
    main["load_rss_peak_mib"] = max(samples, default=proxy.rss_mib())
    main["peak_rss_hwm_mib"] = proxy.peak_rss_mib()
    runs["anthropic-c1"] = _pair(bench, proxy, ANTHROPIC, 1)
    runs["anthropic-c16"] = _pair(bench, proxy, ANTHROPIC, 16)
    runs["stream-c1"] = _pair(bench, proxy, OPENAI_STREAM, 1)
    runs["stream-c16"] = _pair(bench, proxy, OPENAI_STREAM, 16)
    runs["failover-c1"] = _pair(bench, proxy, FAILOVER, 1)
    runs["failover-c16"] = _pair(bench, proxy, FAILOVER, 16)
    main["runs"] = runs
    time.sleep(0.5)
    main["idle_rss_after_load_mib"] = proxy.rss_mib()
    return main


def measure_grpc(bench: Bench, main: Mapping[str, Any]) -> dict[str, Any]:
    """`Gateway.Proxy` through a Detour serving gRPC (started for these runs; the others run with
    `--grpc-port 0`), driven by `bench.grpcload` in its own process where wrk runs. The baseline of
    each run is the direct *HTTP* call of the matching plain run (wrk to the upstream): there is no
    gRPC upstream, so the added latency is everything between a gRPC client and the upstream's answer,
    the Python gRPC client's own time included."""
    settings, others = bench.settings, bench.placement.others
    with bench.start("detour-grpc", grpc=True) as proxy:
        out: dict[str, Any] = {"ready_s": proxy.ready_s}
        time.sleep(0.2)
        out["idle_rss_mib"] = proxy.rss_mib()
        run_grpc_load(proxy.grpc_target, OPENAI, concurrency=16, duration_s=settings.warmup_s, cpus=others)
        runs = {}
        for name, http_run, concurrency, delay_ms in GRPC_RUNS:
            cpu_before = proxy.cpu_s()
            through = run_grpc_load(
                proxy.grpc_target,
                OPENAI,
                concurrency=concurrency,
                duration_s=settings.duration_s,
                delay_ms=delay_ms,
                warmup=GRPC_WARMUP_CALLS,
                cpus=others,
            )
            cpu_s = proxy.cpu_s() - cpu_before
            calls = through.requests + through.warmup_calls
            runs[name] = {
                "baseline": http_run,
                "direct": main["runs"][http_run]["direct"],
                "through": through.as_dict(),
                "detour_cpu_s": round(cpu_s, 3),
                "detour_cpu_us_per_request": round(cpu_s / calls * 1e6, 1) if calls else None,
            }
        out["runs"] = runs
    return out


def measure_telemetry(bench: Bench, main: Mapping[str, Any], off: Detour) -> dict[str, Any]:
    """Every scenario of `TELEMETRY_RUNS` through a Detour exporting telemetry to an OTLP/HTTP receiver
    in its own process (where wrk runs); the direct call of each is the main run's of the same name.

    The CPU ratio to telemetry off is taken from `CPU_PAIRS` alternating 16-connection runs through
    `off` (the main Detour) and the exporting one, minutes after the main runs: this machine's speed
    drifts by more than the ratio's margin between the two phases."""
    with OtlpSink(bench.placement.others) as sink, bench.start("detour-telemetry", env=sink.env()) as proxy:
        out: dict[str, Any] = {"ready_s": proxy.ready_s}
        time.sleep(0.2)
        out["idle_rss_mib"] = proxy.rss_mib()
        bench.warm_up(proxy, TELEMETRY_SCENARIOS, direct=False)  # the direct side is warm from main
        runs = {}
        for name, scenario, connections, script in TELEMETRY_RUNS:
            peak = name == "openai-c64"  # the peak under load, as in `measure_main`
            sampler: contextlib.AbstractContextManager[list[float]]
            sampler = sampling_rss(proxy) if peak else contextlib.nullcontext([])
            with sampler as samples:
                through, cpu_s = bench.through(proxy, scenario, connections, script)
            if peak:
                out["load_rss_peak_mib"] = max(samples, default=proxy.rss_mib())
            runs[name] = {
                "direct": main["runs"][name]["direct"],
                "through": through.as_dict(),
                "detour_cpu_s": round(cpu_s, 3),
                "detour_cpu_us_per_request": round(cpu_s / through.requests * 1e6, 1)
                if through.requests
                else None,
            }
        pairs = []
        for _ in range(CPU_PAIRS):
            plain, plain_cpu = bench.through(off, OPENAI, 16)
            exporting, exporting_cpu = bench.through(proxy, OPENAI, 16)
            pairs.append(
                {
                    "off_us": plain_cpu / plain.requests * 1e6 if plain.requests else None,
                    "on_us": exporting_cpu / exporting.requests * 1e6 if exporting.requests else None,
                    "off_rps": plain.rps,
                    "on_rps": exporting.rps,
                }
            )
        out["cpu_pairs"] = pairs
        time.sleep(1.5)  # one more export interval, so the last batch arrives
        out["runs"] = runs
        out["load_rss_mib"] = proxy.rss_mib()
        out["peak_rss_hwm_mib"] = proxy.peak_rss_mib()
        out["exports"] = sink.snapshot()
    out["available"] = bool(out["exports"])
    return out


def derive_metrics(results: Mapping[str, Any], events: int) -> dict[str, Any]:
    """The headline numbers, each a difference of two runs measured side by side."""
    runs = results["main"]["runs"]
    metrics = _run_metrics(runs, events) | {
        "direct_rps_c16": runs["openai-c16"]["direct"]["rps"],
        "direct_rps_c64": runs["openai-c64"]["direct"]["rps"],
        "idle_rss_mib": results["startup"]["idle_rss_median_mib"],
        "load_rss_peak_mib": results["main"]["load_rss_peak_mib"],
        "ready_s": results["startup"]["ready_median_s"],
    }
    grpc = results.get("grpc")
    if grpc:
        metrics["grpc"] = _grpc_metrics(grpc["runs"])
        metrics["errors"] += sum(run["through"]["errors"] for run in grpc["runs"].values())
    telemetry = results.get("telemetry")
    if telemetry:
        metrics["errors"] += sum(run["through"]["errors"] for run in telemetry["runs"].values())
    if telemetry and telemetry["available"]:
        on = _run_metrics(telemetry["runs"], events) | {
            "idle_rss_mib": telemetry["idle_rss_mib"],
            "ready_s": telemetry["ready_s"],
        }
        if "load_rss_peak_mib" in telemetry:  # absent from results older than the peak sampling
            on["load_rss_peak_mib"] = telemetry["load_rss_peak_mib"]
        pairs = [p for p in telemetry.get("cpu_pairs", ()) if p["off_us"] and p["on_us"]]
        if pairs:  # same-moment pairs (older results: the two phases' 16-connection runs)
            on["cpu_pair_off_us"] = statistics.median(p["off_us"] for p in pairs)
            on["cpu_pair_on_us"] = statistics.median(p["on_us"] for p in pairs)
            on["cpu_pairs"] = len(pairs)
            # Each pair's two runs are seconds apart; the machine's speed drifts more than that
            # between pairs, so the ratio is taken within each pair, then the median of those.
            on["cpu_ratio_vs_off"] = statistics.median(p["on_us"] / p["off_us"] for p in pairs)
            # Every exporting run that served, whether or not its pair's other run did.
            on_rps = [p["on_rps"] for p in telemetry.get("cpu_pairs", ()) if p.get("on_rps")]
            if on_rps:
                # One 5 s run's throughput swings by a fifth with this machine's speed: the target
                # is read from the median of the exporting Detour's 16-connection runs (the main
                # one and the pairs'), the single run's figure kept beside it.
                runs_c16 = [on["rps_c16"], *on_rps]
                on["rps_c16_single"] = on["rps_c16"]
                on["rps_c16_runs"] = len(runs_c16)
                on["rps_c16_range"] = (min(runs_c16), max(runs_c16))
                on["rps_c16"] = statistics.median(runs_c16)
        elif on["cpu_us_per_request"] and metrics["cpu_us_per_request"]:
            on["cpu_ratio_vs_off"] = on["cpu_us_per_request"] / metrics["cpu_us_per_request"]
        metrics["telemetry"] = on
    return metrics


def _added(run: Mapping[str, Any], field: str) -> float:
    return float(run["through"][field] - run["direct"][field])


def _run_metrics(runs: Mapping[str, Any], events: int) -> dict[str, Any]:
    """The numbers of one Detour's HTTP runs: the plain runs' (`_core_metrics`), then, when the runs
    include them, the stream's and the failover's."""
    metrics = _core_metrics(runs) | {"errors": sum(run["through"]["errors"] for run in runs.values())}
    if not {"stream-c1", "failover-c1", "failover-c16"} <= runs.keys():
        return metrics
    stream, plain, failover = runs["stream-c1"], runs["openai-c1"], runs["failover-c1"]
    stream_cpu_us = stream["detour_cpu_us_per_request"] or 0.0
    plain_cpu_us = plain["detour_cpu_us_per_request"] or 0.0
    metrics |= {
        "sse_added_ms_per_event": _added(stream, "p50_ms") / events,
        # The stream's CPU beyond a plain request's, spread over its events.
        "sse_cpu_us_per_event": (stream_cpu_us - plain_cpu_us) / events,
        "failover_extra_ms": failover["through"]["p50_ms"] - plain["through"]["p50_ms"],
        "upstream_round_trip_429_ms": failover["direct"]["p50_ms"],
        "failover_rps_c16": runs["failover-c16"]["through"]["rps"],
        "failover_cpu_us_per_request": runs["failover-c16"]["detour_cpu_us_per_request"],
    }
    metrics["failover_excess_ms"] = metrics["failover_extra_ms"] - metrics["upstream_round_trip_429_ms"]
    return metrics


def _core_metrics(runs: Mapping[str, Any]) -> dict[str, Any]:
    paced = runs["openai-c16-paced"]
    return {
        "added_p50_c1_ms": _added(runs["openai-c1"], "p50_ms"),
        "added_p99_c1_ms": _added(runs["openai-c1"], "p99_ms"),
        "added_p50_paced_ms": _added(paced, "p50_ms"),
        "added_p99_paced_ms": _added(paced, "p99_ms"),
        "paced_rps": paced["through"]["rps"],
        "added_p50_c16_ms": _added(runs["openai-c16"], "p50_ms"),
        "added_p99_c16_ms": _added(runs["openai-c16"], "p99_ms"),
        "rps_c16": runs["openai-c16"]["through"]["rps"],
        "rps_c64": runs["openai-c64"]["through"]["rps"],
        "cpu_us_per_request": runs["openai-c16"]["detour_cpu_us_per_request"],
    }


def _grpc_metrics(runs: Mapping[str, Any]) -> dict[str, Any]:
    """The gRPC runs' numbers named as the HTTP plain runs' (`_core_metrics`), baseline direct HTTP."""
    c1, paced, c16 = runs["grpc-proxy-c1"], runs["grpc-proxy-c16-paced"], runs["grpc-proxy-c16"]
    return {
        "added_p50_c1_ms": _added(c1, "p50_ms"),
        "added_p99_c1_ms": _added(c1, "p99_ms"),
        "added_p50_paced_ms": _added(paced, "p50_ms"),
        "added_p99_paced_ms": _added(paced, "p99_ms"),
        "paced_rps": paced["through"]["rps"],
        "rps_c16": c16["through"]["rps"],
        "cpu_us_per_request": c16["detour_cpu_us_per_request"],
        "client_cpu_share_c16": c16["through"]["client_cpu_s"] / c16["through"]["duration_s"],
    }
