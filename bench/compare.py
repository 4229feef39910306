"""`python -m bench --compare A,B,…`: alternative stacks measured side by side, interleaved.

A shared machine's noise moves whole minutes up or down, so comparing two full runs taken one after
the other compares two moments as much as two stacks. Here every stack is started once (all pinned
to Detour's core, idle while not measured), then each round measures every stack in turn, and the
table shows each metric's median over the rounds. Detour's CPU time per request (from /proc) is
the steadiest number: it does not depend on how wrk or the upstream were scheduled.
"""

from __future__ import annotations

import contextlib
import pathlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from bench.full import PACED, PACED_CONNECTIONS, Bench, Settings
from bench.otlp_sink import OtlpSink
from bench.procs import Detour, Placement, upstream
from bench.scenarios import FAILOVER, OPENAI, OPENAI_STREAM
from bench.variants import command_for, split_stack
from bench.wrk import INSTALL_HINT, find_wrk

COLUMNS = (
    ("rps_c16", "req/s, 16 conns", "{:,.0f}"),
    ("cpu_us_c16", "CPU µs/request", "{:,.0f}"),
    ("added_p50_c1_ms", "added p50, sequential", "{:.3f} ms"),
    ("added_p99_c1_ms", "added p99, sequential", "{:.3f} ms"),
    ("added_p50_paced_ms", "added p50, 16 paced", "{:.3f} ms"),
    ("added_p99_paced_ms", "added p99, 16 paced", "{:.3f} ms"),
    ("sse_added_ms_per_event", "added ms/SSE event", "{:.4f}"),
    ("sse_cpu_us_per_event", "CPU µs/SSE event", "{:.1f}"),
    ("failover_cpu_us", "failover CPU µs/request", "{:,.0f}"),
    ("idle_rss_mib", "RSS idle", "{:.1f} MiB"),
    ("errors", "errors", "{:.0f}"),
)


def _measure(bench: Bench, proxy: Detour, direct: dict[str, float], events: int) -> dict[str, float]:
    c16, cpu16 = bench.through(proxy, OPENAI, 16)
    c1, _ = bench.through(proxy, OPENAI, 1)
    paced, _ = bench.through(proxy, OPENAI, PACED_CONNECTIONS, PACED)
    stream, stream_cpu = bench.through(proxy, OPENAI_STREAM, 1)
    failover, failover_cpu = bench.through(proxy, FAILOVER, 16)
    plain_cpu_us = cpu16 / c16.requests * 1e6 if c16.requests else float("nan")
    stream_cpu_us = stream_cpu / stream.requests * 1e6 if stream.requests else float("nan")
    return {
        "rps_c16": c16.rps,
        "cpu_us_c16": plain_cpu_us,
        "added_p50_c1_ms": c1.p50_ms - direct["p50_c1"],
        "added_p99_c1_ms": c1.p99_ms - direct["p99_c1"],
        "added_p50_paced_ms": paced.p50_ms - direct["p50_paced"],
        "added_p99_paced_ms": paced.p99_ms - direct["p99_paced"],
        "sse_added_ms_per_event": (stream.p50_ms - direct["stream_p50"]) / events,
        "sse_cpu_us_per_event": (stream_cpu_us - plain_cpu_us) / events,
        "failover_cpu_us": failover_cpu / failover.requests * 1e6 if failover.requests else float("nan"),
        "errors": float(c16.errors + c1.errors + paced.errors + stream.errors + failover.errors),
    }


def run_compare(
    stacks: Sequence[str], *, rounds: int = 3, duration_s: float = 3.0, events: int = 200
) -> dict[str, Any]:
    wrk = find_wrk()
    if wrk is None:
        raise SystemExit(INSTALL_HINT)
    placement = Placement.default()
    per_stack: dict[str, list[dict[str, float]]] = {stack: [] for stack in stacks}
    idle: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="detour-compare-") as tmp, contextlib.ExitStack() as stack_exit:
        work = pathlib.Path(tmp)
        up = stack_exit.enter_context(upstream(events=events, cpus=placement.others))
        bench = Bench(wrk, up, work, placement, Settings(duration_s=duration_s, warmup_s=1.0))
        proxies: dict[str, Detour] = {}
        sink: OtlpSink | None = None
        for stack in stacks:
            bench.settings = Settings(duration_s=duration_s, warmup_s=1.0, detour_command=command_for(stack))
            _, mods, env = split_stack(stack)
            if "otel" in mods:
                if sink is None:
                    sink = stack_exit.enter_context(OtlpSink(placement.others))
                env = sink.env() | env  # the modifiers win (`notraces`, …)
            proxies[stack] = stack_exit.enter_context(bench.start(stack.replace("+", "-"), env=env))
            time.sleep(0.2)
            idle[stack] = proxies[stack].rss_mib()
        for proxy in proxies.values():
            bench.warm_up(proxy, (OPENAI, OPENAI_STREAM, FAILOVER))
        for _ in range(rounds):
            c1 = bench.direct(OPENAI, 1)
            stream = bench.direct(OPENAI_STREAM, 1)
            paced = bench.direct(OPENAI, PACED_CONNECTIONS, PACED)
            direct = {
                "p50_c1": c1.p50_ms,
                "p99_c1": c1.p99_ms,
                "p50_paced": paced.p50_ms,
                "p99_paced": paced.p99_ms,
                "stream_p50": stream.p50_ms,
            }
            for stack, proxy in proxies.items():
                per_stack[stack].append(_measure(bench, proxy, direct, events))
    medians = {
        stack: {
            key: statistics.median(r[key] for r in runs) for key, _, _ in COLUMNS if key != "idle_rss_mib"
        }
        | {"idle_rss_mib": idle[stack]}
        for stack, runs in per_stack.items()
    }
    return {
        "stacks": list(stacks),
        "rounds": rounds,
        "duration_s": duration_s,
        "medians": medians,
        "runs": per_stack,
    }


def render_compare(results: dict[str, Any]) -> str:
    header = "| stack | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [
        f"Median of {results['rounds']} interleaved rounds, {results['duration_s']:g} s per wrk run.",
        "",
        header,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for stack, values in results["medians"].items():
        cells = [fmt.format(values[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| {stack} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
