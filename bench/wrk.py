"""Load from a standard generator: `wrk`, driven with a Lua script that POSTs a JSON body and prints
its own exact latency percentiles as one JSON line (wrk's text report rounds and varies in units).

The full benchmark needs wrk (Debian: `apt-get install -y wrk`); `find_wrk` finds it on PATH, installs it
with apt-get when running as root on a Debian-family machine, or says
how to install it. The smoke run does not use wrk at all (see `bench.loadgen`).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from bench.procs import pin

INSTALL_HINT = "wrk is not installed: `apt-get update && apt-get install -y wrk` (Debian/Ubuntu)"

_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
{delay}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"mean_us":%.2f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    duration_s: float
    rps: float
    errors: int  # socket errors, timeouts and non-2xx answers
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def find_wrk() -> str | None:
    """wrk on PATH; if missing on a Debian-family machine where we are root, install it first."""
    found = shutil.which("wrk")
    if found is not None or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    print("wrk is not installed; installing it with apt-get …", file=sys.stderr)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(command, check=False, capture_output=True).returncode != 0:
            return None
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def write_script(
    path: pathlib.Path, body: bytes, headers: Mapping[str, str], *, delay_ms: int | None = None
) -> pathlib.Path:
    """A wrk script that POSTs `body`; with `delay_ms`, each connection pauses between requests
    (wrk's `delay` hook) for an exponentially distributed time with that mean: independent clients,
    as on a real pod. A fixed pause would march all connections in lockstep and measure the
    queueing of synchronised bursts instead of the added latency at that load."""
    lines = "\n".join(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items())
    delay = (
        ""
        if delay_ms is None
        else f"delay = function() return math.floor(-math.log(1 - math.random()) * {int(delay_ms)}) end"
    )
    path.write_text(_SCRIPT.format(body=_lua_string(body.decode()), headers=lines, delay=delay))
    return path


def run_wrk(
    wrk: str,
    url: str,
    script: pathlib.Path,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    cpus: Sequence[int] | None = None,
    timeout_s: float = 10,
) -> WrkResult:
    command = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(round(duration_s), 1)}s",
        f"--timeout={int(timeout_s)}s",
        "-s",
        str(script),
        url,
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration_s + timeout_s + 30,
        check=False,
        preexec_fn=lambda: pin(cpus),
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout}{completed.stderr}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    duration = raw["duration_us"] / 1e6
    errors = sum(raw[key] for key in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        connections=connections,
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration else 0.0,
        errors=errors,
        mean_ms=raw["mean_us"] / 1000,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
