"""`python -m bench --profile`: where Detour's CPU goes on the request path, measured with py-spy.

Detour runs pinned to its core under wrk load (16 connections, small non-streaming OpenAI requests)
while `py-spy record --format raw` samples it; the collapsed stacks are then summarised as text —
self time by library, and the functions with the most inclusive time — because a table in the docs
survives review better than an SVG. py-spy is in the `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence

from bench.otlp_sink import OtlpSink
from bench.procs import ROOT, Placement, detour, upstream
from bench.scenarios import OPENAI, Scenario
from bench.wrk import INSTALL_HINT, WrkResult, find_wrk, run_wrk, write_script

# (part of the frame's file path, component) — first match wins; paths are py-spy's full file names.
_COMPONENTS = (
    ("/sidecar/ingress/", "detour: ingress (ASGI app)"),
    ("/sidecar/routing/", "detour: routing"),
    ("/sidecar/dialects/", "detour: dialects"),
    ("/sidecar/providers/", "detour: providers"),
    ("/sidecar/telemetry/", "detour: telemetry hooks"),
    ("/sidecar/", "detour: other"),
    ("/uvicorn/", "uvicorn (HTTP server)"),
    ("/httpx_aiohttp/", "httpx-aiohttp transport"),
    ("/httpx/", "httpx (client API)"),
    ("/aiohttp/", "aiohttp (client)"),
    ("/opentelemetry/exporter/", "opentelemetry exporter (encode + send, its own thread)"),
    ("/opentelemetry/", "opentelemetry SDK (spans, metrics)"),
    ("/google/protobuf/", "protobuf"),
    ("/http/cookiejar", "http.cookiejar (httpx cookies)"),
    ("/logging/", "logging"),
    ("/asyncio/", "asyncio (stdlib)"),
    ("/threading.py", "threading"),
    ("/yarl/", "yarl (URLs)"),
    ("/multidict/", "multidict"),
    ("/email/", "email (header parsing)"),
    ("/urllib/", "urllib (httpx cookies)"),
    ("/urllib3/", "urllib3 / requests (exporter HTTP)"),
    ("/requests/", "urllib3 / requests (exporter HTTP)"),
)
# Without --native, time in uvloop's C loop (epoll, socket I/O, callbacks' C parts) is charged to
# the innermost Python frame, which for the loop itself is one of these.
_LOOP_FRAMES = ("Runner.run ", "run_until_complete ", "run_forever ", "Server.serve ")


def find_py_spy() -> str | None:
    here = pathlib.Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _where(frame: str) -> str:
    return frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else ""


def component(frame: str) -> str:
    if frame.startswith(_LOOP_FRAMES):
        return "event loop (uvloop's C code and syscalls)"
    where = _where(frame)
    if where == "<string>":
        return "generated code (dataclass __init__)"
    for part, name in _COMPONENTS:
        if part in where:
            return name
    if where.endswith((".c", ".h", ".pyx")) or ".so" in where:
        return "native code"
    return "python stdlib / other" if where else "unknown"


def short(frame: str) -> str:
    """`name (/…/site-packages/httpx/_client.py)` → `name (httpx/_client.py)`."""
    where = _where(frame)
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in where:
            tail = where.split(marker, 1)[1]
            if marker == "/lib/python3":
                tail = tail.split("/", 1)[1] if "/" in tail else tail
            return frame[: frame.rfind("(")] + f"({tail})"
    return frame


def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(stacks: Sequence[tuple[list[str], int]], top: int = 30) -> str:
    total = sum(count for _, count in stacks) or 1
    by_self: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        python_frames = [f for f in frames if component(f) not in ("native code", "unknown")]
        leaf = python_frames[-1] if python_frames else frames[-1]
        by_self[leaf] += count
        by_component[component(leaf)] += count
        for frame in set(frames):
            inclusive[frame] += count

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples of Detour's threads (on-CPU only)", "", "Self time by library:"]
    out += [f"  {pct(n)}  {name}" for name, n in by_component.most_common()]
    out += ["", f"Top {top} functions by self time (C calls are charged to their Python caller):"]
    out += [f"  {pct(n)}  {short(frame)}" for frame, n in by_self.most_common(top)]
    out += ["", f"Top {top} functions by inclusive time (below the event loop):"]
    skip = ("<module>", "_run_module_as_main", "_run_code", "main (", "_run (", "Runner.run", "run_forever")
    interesting = [
        (f, n) for f, n in inclusive.most_common() if not f.startswith(skip) and component(f) != "native code"
    ]
    out += [f"  {pct(n)}  {short(frame)}" for frame, n in interesting[:top]]
    return "\n".join(out) + "\n"


def run_profile(
    out_dir: pathlib.Path,
    *,
    duration_s: float = 10,
    command: Sequence[str] | None = None,
    stem: str = "detour",
    scenario: Scenario = OPENAI,
    connections: int = 16,
    rate: int = 200,
    telemetry: bool = False,
) -> str:
    """With `telemetry`, Detour exports to an OTLP receiver (its own process) while it is sampled."""
    wrk, spy = find_wrk(), find_py_spy()
    if wrk is None:
        raise SystemExit(INSTALL_HINT)
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]' (or pip install py-spy)")
    placement = Placement.default()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"profile-{stem}" + ("" if scenario is OPENAI else f"-{scenario.name}")
    name += "-telemetry" if telemetry else ""
    raw = out_dir / f"{name}.collapsed"
    load: list[WrkResult] = []
    with tempfile.TemporaryDirectory(prefix="detour-profile-") as tmp, contextlib.ExitStack() as stack:
        work = pathlib.Path(tmp)
        script = write_script(work / "load.lua", scenario.body, scenario.headers)
        env = stack.enter_context(OtlpSink(placement.others)).env() if telemetry else None
        up = stack.enter_context(upstream(cpus=placement.others))
        proxy = stack.enter_context(detour(up.url, work, cpus=placement.detour, command=command, env=env))
        url = scenario.detour_url(proxy.url)

        def wrk_for(seconds: float) -> WrkResult:
            return run_wrk(
                wrk, url, script, connections=connections, duration_s=seconds, cpus=placement.others
            )

        wrk_for(2)  # warm-up
        loader = threading.Thread(target=lambda: load.append(wrk_for(duration_s + 2)))
        loader.start()
        try:
            time.sleep(1)
            subprocess.run(
                [spy, "record", "--pid", str(proxy.pid), "--duration", str(int(duration_s)),
                 "--rate", str(rate), "--format", "raw", "--nolineno", "--nonblocking", "--full-filenames",
                 "--output", str(raw)],
                check=True, capture_output=True, timeout=duration_s + 30,
            )  # fmt: skip
        finally:
            loader.join()
    what = f"`{stem}`" + (" with telemetry exporting" if telemetry else "")
    header = (
        f"py-spy profile of {what}: wrk {connections} connections, {scenario.name} requests, "
        f"{duration_s:g} s at {rate} Hz (load while sampling: {load[0].rps:,.0f} req/s)\n\n"
        if load
        else ""
    )
    text = header + summarise(parse_collapsed(raw.read_text().splitlines()))
    (out_dir / f"{name}.txt").write_text(text)
    return text
