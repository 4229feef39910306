"""A gRPC load generator for `detour.v1.Gateway/Proxy`, run as its own process so its client work
never shares a GIL with anything measured: `python -m bench.grpcload HOST:PORT …`.

A `grpc.aio` client (on uvloop) sends the body a scenario of `bench.scenarios` POSTs over HTTP, as a
`ProxyRequest` of that scenario's dialect, from `--concurrency` workers over `--channels` channels
(each its own HTTP/2 connection), for `--calls` calls or `--duration` seconds, whichever ends first.
With `--delay-ms`, every worker pauses between calls for an exponentially distributed time with that
mean, floored to whole milliseconds — what the paced wrk script does (`bench.wrk.write_script`).
Every answer is checked (gRPC status OK, HTTP status 200, a body). It prints one line,
`BENCHJSON {…}`: the fields of `bench.wrk.WrkResult` (exact latency percentiles, nearest rank over
every timed call) plus the warm-up calls made before timing, the client's own CPU seconds, and the
first few errors. `run_grpc_load` starts it and reads that line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.procs import ROOT, pin
from bench.scenarios import BY_NAME, Scenario

PREFIX = "BENCHJSON "


@dataclass(frozen=True)
class GrpcLoadResult:
    connections: int  # concurrent calls (the column wrk's connections fill)
    requests: int  # timed calls that completed, failed ones included
    duration_s: float
    rps: float
    errors: int  # gRPC errors, non-200 answers and empty bodies
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    channels: int = 1
    warmup_calls: int = 0  # made before timing, on the same channels (Detour's CPU covers them too)
    client_cpu_s: float = 0.0  # the load generator's own CPU time while timed (all its threads)
    error_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dialect_of(scenario: Scenario) -> str:
    return "anthropic" if scenario.path.endswith("/messages") else "openai"


def _percentile(ordered: Sequence[float], pct: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    import grpc

    from sidecar.ingress.grpc._generated import gateway_pb2, gateway_pb2_grpc

    scenario = BY_NAME[args.scenario]
    headers = {k: v for k, v in scenario.headers.items() if k != "content-type"}
    request = gateway_pb2.ProxyRequest(dialect=dialect_of(scenario), body=scenario.body, headers=headers)
    # A local subchannel pool per channel: without it grpc shares one connection between channels.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    stubs = [gateway_pb2_grpc.GatewayStub(channel) for channel in channels]
    latencies: list[float] = []
    errors: list[str] = []
    calls = 0

    async def call(stub: Any) -> float | None:
        started = time.perf_counter()
        try:
            reply = await stub.Proxy(request, timeout=args.timeout)
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")
            return None
        if reply.status != 200 or not reply.body:
            errors.append(f"HTTP {reply.status}: {reply.body[:200]!r}")
            return None
        return time.perf_counter() - started

    async def worker(index: int, deadline: float) -> None:
        nonlocal calls
        stub = stubs[index % len(stubs)]
        while calls < args.calls and time.perf_counter() < deadline:
            calls += 1
            latency = await call(stub)
            if latency is not None:
                latencies.append(latency)
            if args.delay_ms:
                await asyncio.sleep(math.floor(-math.log(1 - random.random()) * args.delay_ms) / 1000)

    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), args.timeout)
        warmup = [call(stubs[i % len(stubs)]) for i in range(args.warmup)]
        await asyncio.gather(*warmup)
        errors.clear()  # only timed calls count
        cpu, started = time.process_time(), time.perf_counter()
        deadline = started + (args.duration if args.duration else math.inf)
        await asyncio.gather(*(worker(i, deadline) for i in range(args.concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        for channel in channels:
            await channel.close()
    ordered = sorted(latencies)
    return {
        "connections": args.concurrency,
        "requests": calls,
        "duration_s": round(elapsed, 3),
        "rps": round(calls / elapsed, 1) if elapsed else 0.0,
        "errors": len(errors),
        "mean_ms": sum(ordered) / len(ordered) * 1000 if ordered else float("nan"),
        **{f"p{p}_ms": _percentile(ordered, p) * 1000 for p in (50, 90, 99)},
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
        "channels": args.channels,
        "warmup_calls": args.warmup,
        "client_cpu_s": round(cpu, 3),
        "error_samples": errors[:3],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.grpcload", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of Detour's gRPC API")
    parser.add_argument("--scenario", default="openai", choices=sorted(BY_NAME))
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight (1: sequential)")
    parser.add_argument("--channels", type=int, default=1, help="channels (connections) to spread them on")
    parser.add_argument("--calls", type=int, default=sys.maxsize, help="stop after this many timed calls")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    parser.add_argument("--delay-ms", type=int, default=0, help="mean pause between a worker's calls")
    parser.add_argument("--warmup", type=int, default=0, help="untimed calls first, all at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calls == sys.maxsize and not args.duration:
        raise SystemExit("give --calls or --duration")
    import uvloop

    sys.stdout.write(PREFIX + json.dumps(uvloop.run(_load(args))) + "\n")
    return 0


def run_grpc_load(
    target: str,
    scenario: Scenario,
    *,
    concurrency: int = 1,
    channels: int = 1,
    calls: int | None = None,
    duration_s: float | None = None,
    delay_ms: int | None = None,
    warmup: int = 0,
    cpus: Sequence[int] | None = None,
    timeout_s: float = 10.0,
) -> GrpcLoadResult:
    """Run the load generator as a subprocess (pinned to `cpus`) and return what it measured."""
    command = [sys.executable, "-m", "bench.grpcload", target, "--scenario", scenario.name]
    command += ["--concurrency", str(concurrency), "--channels", str(channels), "--warmup", str(warmup)]
    command += ["--timeout", str(timeout_s)]
    if calls is not None:
        command += ["--calls", str(calls)]
    if duration_s is not None:
        command += ["--duration", str(duration_s)]
    if delay_ms:
        command += ["--delay-ms", str(delay_ms)]
    budget = (duration_s or 0) + timeout_s + 60  # a bound for a wedged client, not a measure
    completed = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
        preexec_fn=lambda: pin(cpus),
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith(PREFIX)), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"bench.grpcload failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return GrpcLoadResult(**json.loads(line.removeprefix(PREFIX)))


if __name__ == "__main__":
    sys.exit(main())
