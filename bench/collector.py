"""What the cyclic garbage collector costs Detour under load: `python -m bench.collector`.

An instruction count (`bench.instructions`) hardly sees the collector: walking tens of thousands of
objects is mostly cache misses, not instructions. This times it where it runs. Detour is started as
in the full run (pinned to its core; telemetry off, or exporting to the benchmark's OTLP receiver)
with `DETOUR_GC_THRESHOLD` set, and a few lines run before `detour serve` that time every collection
(`gc.callbacks`, the collecting thread's CPU time) while wrk sends small OpenAI requests on 16
connections, unpaced, after a warm-up. Per threshold and telemetry setting it prints the requests,
the collections of each generation, the collector's CPU per request and its longest collection.
Needs wrk, as the full run does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bench.otlp_sink import OtlpSink
from bench.procs import HOST, Detour, Placement, detour, upstream
from bench.scenarios import OPENAI
from bench.wrk import find_wrk, run_wrk, write_script

# Run in Detour's process before `detour serve`: collections are timed between an `arm` and a
# `dump` file appearing in the directory `BENCH_COLLECTOR_DIR` names; the result is `gc.json` there.
TIMED_SERVE = r"""
import collections, gc, json, os, pathlib, runpy, sys, threading, time

control = pathlib.Path(os.environ["BENCH_COLLECTOR_DIR"])
timed = []
started = [0.0]

def on_collection(phase, info):
    if phase == "start":
        started[0] = time.thread_time()
    else:
        timed.append((info["generation"], time.thread_time() - started[0]))

def watch():
    while not (control / "arm").exists():
        time.sleep(0.02)
    gc.callbacks.append(on_collection)
    while not (control / "dump").exists():
        time.sleep(0.02)
    gc.callbacks.remove(on_collection)
    by_generation = collections.defaultdict(list)
    for generation, seconds in timed:
        by_generation[generation].append(seconds)
    result = {g: [len(s), sum(s), max(s)] for g, s in by_generation.items()}
    written = control / "gc.json.partial"
    written.write_text(json.dumps({"generations": result, "thresholds": gc.get_threshold()}))
    written.rename(control / "gc.json")  # whole or not at all

threading.Thread(target=watch, daemon=True).start()
sys.argv = ["sidecar.cli.main", *sys.argv[1:]]
runpy.run_module("sidecar.cli.main", run_name="__main__")
"""


def measure(
    threshold: int, telemetry: bool, duration_s: float, wrk: str, work: pathlib.Path
) -> dict[str, Any]:
    placement = Placement.default()
    control = pathlib.Path(tempfile.mkdtemp(dir=work))
    with upstream(cpus=placement.others) as up, OtlpSink(placement.others) as sink:
        env = {"DETOUR_GC_THRESHOLD": str(threshold), **(sink.env() if telemetry else {})}
        with timed_detour(up.url, control, placement.detour, env) as running:
            url = OPENAI.detour_url(f"http://{HOST}:{running.port}")
            script = write_script(control / "post.lua", OPENAI.body, OPENAI.headers)
            run_wrk(wrk, url, script, connections=16, duration_s=2, cpus=placement.others)  # warm-up
            arm(control)
            result = run_wrk(wrk, url, script, connections=16, duration_s=duration_s, cpus=placement.others)
            timed = collections_timed(control)
    generations = timed["generations"]
    total_s = sum(values[1] for values in generations.values())
    return {
        "threshold": threshold,
        "telemetry": telemetry,
        "requests": result.requests,
        "rps": result.rps,
        "errors": result.errors,
        "collections": [generations.get(g, [0, 0.0, 0.0])[0] for g in range(3)],
        "gc_us_per_request": total_s / max(result.requests, 1) * 1e6,
        "longest_ms": max((values[2] for values in generations.values()), default=0.0) * 1e3,
    }


@contextlib.contextmanager
def timed_detour(
    upstream_url: str, control: pathlib.Path, cpus: Sequence[int] | None, env: Mapping[str, str]
) -> Iterator[Detour]:
    """Detour whose collections are timed between `arm(control)` and `collections_timed(control)`."""
    command = [sys.executable, "-c", TIMED_SERVE]
    with detour(upstream_url, control, cpus=cpus, env={**env, "BENCH_COLLECTOR_DIR": str(control)},
                command=command) as running:  # fmt: skip
        yield running


def arm(control: pathlib.Path) -> None:
    (control / "arm").touch()


def collections_timed(control: pathlib.Path, timeout_s: float = 10) -> dict[str, Any]:
    """{"generations": {generation: [collections, seconds, longest]}, "thresholds": [...]}."""
    (control / "dump").touch()
    deadline = time.monotonic() + timeout_s
    while not (control / "gc.json").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("Detour did not write its collection times")
        time.sleep(0.02)
    timed: dict[str, Any] = json.loads((control / "gc.json").read_text())
    timed["generations"] = {int(g): values for g, values in timed["generations"].items()}
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", default="700,3000", help="youngest-generation thresholds (700,3000)")
    parser.add_argument("--telemetry", default="off,on", help="off, on or both (off,on)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per run (10)")
    args = parser.parse_args(argv)
    wrk = find_wrk()
    if wrk is None:
        raise SystemExit("needs wrk: apt-get install wrk")
    print("| telemetry | youngest-generation threshold | requests | req/s | collections (gen 0 / 1 / 2) "
          "| collector CPU per request | longest collection |\n|---|---|---|---|---|---|---|")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="detour-collector-") as tmp:
        for setting in args.telemetry.split(","):
            for threshold in (int(part) for part in args.thresholds.split(",")):
                row = measure(threshold, setting == "on", args.duration, wrk, pathlib.Path(tmp))
                if row["errors"]:
                    raise SystemExit(f"{row['errors']} failed requests: {row}")
                print(
                    f"| {setting} | {threshold:,} | {row['requests']:,} | {row['rps']:,.0f} "
                    f"| {' / '.join(map(str, row['collections']))} | {row['gc_us_per_request']:.1f} µs "
                    f"| {row['longest_ms']:.2f} ms |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
