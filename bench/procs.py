"""The processes a benchmark runs: the fast upstream and Detour itself, each a real subprocess.

Detour is started exactly as users start it (`python -m sidecar.cli.main serve --config … --port …`)
with a config generated here that points at the upstream. Everything binds 127.0.0.1; every process
is started inside a context manager that kills it on the way out, whatever happened, and waits for
it, so an interrupted benchmark leaves nothing behind. `/proc` gives RSS and CPU time.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Placement:
    """Which cores each process may use. With two cores or more, Detour gets the last core to itself
    and the load generator shares the first with the upstream; on one core nothing is pinned."""

    detour: tuple[int, ...] | None
    others: tuple[int, ...] | None

    @classmethod
    def default(cls) -> Placement:
        if not hasattr(os, "sched_getaffinity"):  # not Linux: nothing is pinned
            return cls(None, None)
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            return cls(None, None)
        return cls((available[-1],), tuple(available[:-1]))


def pin(cpus: Sequence[int] | None) -> None:
    """Called in a child before exec (`preexec_fn`): restrict it to `cpus`."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s; reaped either way."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class Upstream:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def upstream(
    *, events: int = 200, latency_ms: float = 0.0, cpus: Sequence[int] | None = None
) -> Iterator[Upstream]:
    command = [sys.executable, "-m", "bench.upstream", "--events", str(events)]
    command += ["--latency-ms", str(latency_ms)]
    for cpu in cpus or ():
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().split()  # blocks until READY or exit
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError(f"the bench upstream did not start (exit code {process.poll()})")
        yield Upstream(process, int(line[1]))
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def detour_config(upstream_url: str) -> str:
    """Routes for every scenario: `gpt-*` to the OpenAI dialect, `claude-*` to the Anthropic one, and
    model `failover` to a primary that always answers 429 (retry-after 0) with an alternative."""
    providers = {
        "up-openai": {"type": "openai", "base_url": f"{upstream_url}/v1", "api_key": "bench"},
        "up-anthropic": {"type": "anthropic", "base_url": upstream_url, "api_key": "bench"},
        "limited": {"type": "openai", "base_url": f"{upstream_url}/429/v1", "api_key": "bench"},
    }
    rules = [
        {
            "name": "failover",
            "priority": 30,
            "matcher": {"model_pattern": "^failover$"},
            "strategy": {
                "type": "limits-alternative",
                "primary_providers": ["limited"],
                "alternative_providers": ["up-openai"],
            },
        },
        {
            "name": "anthropic",
            "priority": 20,
            "matcher": {"model_pattern": "^claude"},
            "primary": "up-anthropic",
        },
        {"name": "default", "priority": 10, "matcher": {"always": True}, "primary": "up-openai"},
    ]
    return yaml.safe_dump({"providers": providers, "routing": {"rules": rules}}, sort_keys=False)


@dataclass
class Detour:
    process: subprocess.Popen[bytes]
    port: int
    ready_s: float  # process start to the first 200 from /readyz
    grpc_port: int | None = None  # the gRPC API's port when it serves one

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def grpc_target(self) -> str:
        if self.grpc_port is None:
            raise RuntimeError("this Detour was started without its gRPC API (`detour(..., grpc=True)`)")
        return f"{HOST}:{self.grpc_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        """Of the process and the workers it started, if any (`bench.stacks` `workers2`)."""
        return sum(_status_kib(pid, "VmRSS") for pid in family(self.pid)) / 1024

    def peak_rss_mib(self) -> float:
        return sum(_status_kib(pid, "VmHWM") for pid in family(self.pid)) / 1024

    def cpu_s(self) -> float:
        return sum(cpu_seconds(pid) for pid in family(self.pid))


@contextlib.contextmanager
def detour(
    upstream_url: str,
    workdir: pathlib.Path,
    *,
    cpus: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    name: str = "detour",
    grpc: bool = False,
) -> Iterator[Detour]:
    """Start Detour on a free port and wait for `/readyz`; `command` replaces the usual entry point
    (the harness uses that to measure alternative stacks with the same config). The gRPC API is off
    (`--grpc-port 0`) unless `grpc`, then on a free port of its own: its default port (8082) would
    clash between Detours started side by side, and an idle gRPC server is not what HTTP runs measure.
    `detour serve` listens for gRPC before HTTP, so `/readyz` answering means both are up."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.yaml"
    config.write_text(detour_config(upstream_url))
    port = free_port()
    argv = list(command or [sys.executable, "-m", "sidecar.cli.main"])
    grpc_port = free_port() if grpc else None
    argv += ["serve", "--config", str(config), "--port", str(port), "--grpc-port", str(grpc_port or 0)]
    child_env = {**os.environ, **(env or {})}
    child_env.pop("DETOUR_CONFIG", None)
    with (workdir / f"{name}.log").open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=ROOT, env=child_env, stdout=log, stderr=log, preexec_fn=lambda: pin(cpus)
        )
    try:
        ready_s = wait_ready(f"http://{HOST}:{port}/readyz", process, started)
        yield Detour(process, port, ready_s, grpc_port)
    finally:
        stop_process(process)


def wait_ready(url: str, process: subprocess.Popen[bytes], started: float, timeout_s: float = 20) -> float:
    """Poll every 2 ms; the seconds from `started` to the first 200."""
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{url} was not ready within {timeout_s} s")


def family(pid: int) -> list[int]:
    """A process and its children (one level: Detour's workers), from /proc."""
    pids = [pid]
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(child) for child in task.read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return pids


def _status_kib(pid: int, field: str) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
