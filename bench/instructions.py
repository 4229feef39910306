"""Instructions per request, counted by valgrind's callgrind: `python -m bench.instructions STACK…`.

Timings on a shared 2-core machine drift by a third within minutes; an instruction count does not.
Each stack (`detour`, `detour+otel`, `detour+otel+notraces`, … as in `--compare`) is started under
`valgrind --tool=callgrind` with counting off, warmed up with sequential requests, then counted
over `--requests` more, per thread: the event loop's thread first, then the exporter threads.

What it is good for: a change on the request path, before and after, with nothing else moving
(the event loop's count repeats to a fraction of a percent). What it is not: a time. Cache misses,
the GC's memory traffic and waiting are not instructions, and the process runs ~20 times slower
under valgrind, so work woken by a clock would be done for fewer requests than in real time: here
spans leave only in full batches of 512 (as on a busy pod) and metrics are not exported during the
count (Detour's default interval is 60 s: its cost per request is negligible on a busy pod).

Needs `valgrind` (Debian package `valgrind`); the upstream and the OTLP receiver run as in the
other benchmarks, without valgrind.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from bench.otlp_sink import OtlpSink
from bench.procs import HOST, ROOT, detour_config, free_port, stop_process, upstream, wait_ready
from bench.variants import command_for, split_stack

BODY = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}'
BY_SIZE_ONLY = {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
HEADERS = {"content-type": "application/json", "authorization": "Bearer bench"}


def count(
    stack: str,
    requests: int,
    warmup: int,
    work: pathlib.Path,
    up_url: str,
    sink: OtlpSink,
    connections: int = 1,
) -> list[int]:
    """Instructions per thread over `requests` chat completions through `stack`, sent on
    `connections` kept-alive connections at once."""
    _, mods, env = split_stack(stack)
    if "otel" in mods:
        # Spans leave in full batches of 512 only, as on a busy pod, not on the 0.5 s clock the other
        # benchmarks use (under valgrind that clock would export a batch every ~50 requests).
        env = sink.env() | BY_SIZE_ONLY | env
    config = work / "detour.yaml"
    config.write_text(detour_config(up_url))
    port = free_port()
    out = work / f"callgrind.{stack}"
    argv = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
        f"--callgrind-out-file={out}",
        *(command_for(stack) or [sys.executable, "-m", "sidecar.cli.main"]),
        "serve", "--config", str(config), "--port", str(port), "--grpc-port", "0",
    ]  # fmt: skip
    with (work / f"{stack}.log").open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env={**_environ(), **env}, stdout=log, stderr=log)
    try:
        # Start-up under valgrind takes seconds, not the fraction of a second `wait_ready` expects.
        wait_ready(f"http://{HOST}:{port}/readyz", process, time.perf_counter(), timeout_s=300)
        post_chat_completions(port, warmup, connections)
        subprocess.run(["callgrind_control", "--instr=on", str(process.pid)], check=True, capture_output=True)
        post_chat_completions(port, requests, connections)
        subprocess.run(["callgrind_control", "--dump", str(process.pid)], check=True, capture_output=True)
    finally:
        stop_process(process)
    dumps = sorted(work.glob(f"callgrind.{stack}.1-*"))  # the --dump, one file per thread
    return [total for total in map(_total, dumps) if total]


def _environ() -> dict[str, str]:
    environ = dict(os.environ)
    environ.pop("DETOUR_CONFIG", None)
    return environ


def post_chat_completions(port: int, times: int, connections: int) -> None:
    """`times` requests in all, spread over `connections` threads of one kept-alive connection each."""
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        shares = [times // connections + (index < times % connections) for index in range(connections)]
        for done in [pool.submit(_post_on_one, port, share) for share in shares]:
            done.result()


def _post_on_one(port: int, times: int) -> None:
    """On one kept-alive connection, as the SDKs and wrk do (a new connection per request would
    count its set-up too)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        for _ in range(times):
            connection.request("POST", "/v1/chat/completions", BODY, HEADERS)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"Detour answered {response.status}")
    finally:
        connection.close()


def _total(dump: pathlib.Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="+", help="as in --compare: detour, detour+otel, …")
    parser.add_argument("--requests", type=int, default=500, help="counted requests (default 500)")
    parser.add_argument("--warmup", type=int, default=200, help="uncounted requests first (default 200)")
    parser.add_argument("--connections", type=int, default=1, help="concurrent connections (default 1)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind: apt-get install valgrind")
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="detour-instructions-") as tmp,
        upstream() as up,
        OtlpSink() as sink,
    ):
        for stack in args.stacks:
            threads = count(
                stack, args.requests, args.warmup, pathlib.Path(tmp), up.url, sink, args.connections
            )
            rows.append((stack, [total / args.requests for total in threads]))
    base = rows[0][1][0]
    print(
        f"instructions per request, {args.requests} requests on {args.connections} connection(s) "
        f"(thousands; ratio to {rows[0][0]})"
    )
    print("| stack | event loop | other threads | all |\n|---|---|---|---|")
    for stack, threads in rows:
        loop, others = threads[0], sum(threads[1:])
        print(
            f"| {stack} | {loop / 1e3:,.0f} ({loop / base:.2f}x) | {others / 1e3:,.0f} "
            f"| {(loop + others) / 1e3:,.0f} ({(loop + others) / base:.2f}x) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
