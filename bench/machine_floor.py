"""What this machine adds to a request before any Python framework runs: a do-nothing uvloop
"proxy" (one upstream round trip per request on a kept-alive connection, nothing parsed beyond
`content-length`) that burns a given CPU time per request — half before the upstream call, half
after — to stand in for Detour's work. Measured as the benchmark measures Detour: wrk, added latency
over the direct call, sequential and paced (16 connections, exponential pauses, ≈ 1,000 req/s).

    python -m bench.machine_floor 0 200 300 365 450     # µs of CPU burnt per request

It answers "how much CPU per request can a target afford here" (docs/benchmarks.md, "Targets met
and not met"). The burn is wall time: unlike Python under low load, it does not slow down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from bench.full import PACED_CONNECTIONS, PACED_DELAY_MS
from bench.procs import HOST, ROOT, Placement, free_port, pin, upstream
from bench.scenarios import OPENAI
from bench.wrk import WrkResult, find_wrk, run_wrk, write_script

_ANSWER = b'{"id":"x","object":"chat.completion","choices":[]}'
_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_ANSWER),
    _ANSWER,
)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _burn(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def _proxy(upstream_port: int, port: int, burn_s: float) -> None:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def call_upstream(body: bytes) -> None:
        reader, writer = idle.pop() if idle else await asyncio.open_connection(HOST, upstream_port)
        head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: upstream\r\ncontent-type: application/json\r\n"
        try:
            writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
            answer_head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(answer_head))
        except BaseException:
            writer.close()  # a broken upstream connection is not pooled again
            raise
        idle.append((reader, writer))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                _burn(burn_s / 2)
                await call_upstream(body)
                _burn(burn_s / 2)
                writer.write(_RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, HOST, port)
    print("ready", flush=True)
    await server.serve_forever()


@contextlib.contextmanager
def floor_proxy(upstream_port: int, burn_us: float, cpus: Sequence[int] | None = None) -> Iterator[int]:
    """The proxy in a process of its own (pinned to `cpus`), ready; yields its port."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.machine_floor",
        "--serve",
        str(upstream_port),
        str(port),
        str(burn_us),
    ]
    proxy = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, preexec_fn=lambda: pin(cpus))
    try:
        assert proxy.stdout is not None
        if proxy.stdout.readline().strip() != b"ready":
            raise RuntimeError("the floor proxy did not start")
        yield port
    finally:
        proxy.kill()
        proxy.wait()
        if proxy.stdout is not None:
            proxy.stdout.close()


def measure(burns_us: list[float]) -> None:
    wrk = find_wrk()
    if wrk is None:
        raise SystemExit("needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as scratch:
        _measure(wrk, pathlib.Path(scratch), burns_us)


def _measure(wrk: str, work: pathlib.Path, burns_us: list[float]) -> None:
    placement = Placement.default()
    plain = write_script(work / "post.lua", OPENAI.body, OPENAI.headers)
    paced = write_script(work / "paced.lua", OPENAI.body, OPENAI.headers, delay_ms=PACED_DELAY_MS)
    with upstream(cpus=placement.others) as up:

        def runs(port: int) -> tuple[WrkResult, WrkResult]:
            url = f"http://{HOST}:{port}/v1/chat/completions"
            run_wrk(wrk, url, plain, connections=1, duration_s=1, cpus=placement.others)  # warm-up
            sequential = run_wrk(wrk, url, plain, connections=1, duration_s=4, cpus=placement.others)
            moderate = run_wrk(
                wrk, url, paced, connections=PACED_CONNECTIONS, duration_s=5, cpus=placement.others
            )
            return sequential, moderate

        direct_seq, direct_paced = runs(up.port)
        print(
            "| CPU burnt per request | added p50 / p99, sequential | added p50 / p99, paced | req/s paced "
            "| failed requests |"
        )
        print("|---|---|---|---|---|")
        for burn_us in burns_us:
            with floor_proxy(up.port, burn_us, placement.detour) as port:
                seq, mod = runs(port)
            sequential = f"{seq.p50_ms - direct_seq.p50_ms:.2f} / {seq.p99_ms - direct_seq.p99_ms:.2f} ms"
            moderate = f"{mod.p50_ms - direct_paced.p50_ms:.2f} / {mod.p99_ms - direct_paced.p99_ms:.2f} ms"
            failed = seq.errors + mod.errors
            print(f"| {burn_us:.0f} µs | {sequential} | {moderate} | {mod.rps:,.0f} | {failed} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.machine_floor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "burns_us", nargs="*", type=float, default=[0, 300], help="µs of CPU burnt per request"
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("UPSTREAM_PORT", "PORT", "BURN_US"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        upstream_port, port, burn_us = args.serve
        import uvloop

        uvloop.run(_proxy(int(upstream_port), int(port), float(burn_us) / 1e6))
        return
    measure(args.burns_us)


if __name__ == "__main__":
    main()
