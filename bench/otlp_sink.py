"""An OTLP/HTTP receiver in a process of its own, so "Detour with telemetry exporting" can be measured
without a collector: it accepts every POST (`/v1/traces`, `/v1/metrics`, `/v1/logs`), counts requests
and bytes per path, and answers an empty success. `GET /stats` returns the counts as JSON.

It runs where wrk and the upstream run (`cpus`), never on Detour's core and never in the harness's
own process: a receiver sharing a core or a GIL with what is measured would be measured too.
Detour is pointed at it with the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, protocol
`http/protobuf`, short export intervals). If nothing arrives, telemetry export is not available in
this build and the report says so instead of printing numbers that measure nothing.

`python -m bench.otlp_sink` prints `READY <port>` once it listens; the caller pins it (`OtlpSink(cpus)`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from bench.procs import HOST, ROOT, pin, stop_process


class OtlpSink:
    """The receiver's process, started on enter and stopped on exit."""

    def __init__(self, cpus: Sequence[int] | None = None) -> None:
        self._cpus = cpus
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard OTel variables that make an SDK export here, often."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_SERVICE_NAME": "detour-bench",
        }

    def snapshot(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(f"{self.endpoint}/stats", timeout=5) as response:
            stats: dict[str, dict[str, int]] = json.loads(response.read())
        return stats

    def __enter__(self) -> OtlpSink:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_sink"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: pin(self._cpus),
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            self._stop()
            raise RuntimeError(f"the OTLP sink did not start (exit code {self._process.poll()})")
        self.port = int(line[1])
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def serve() -> None:
    requests: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            payload = self.rfile.read(length) if length else b""
            with lock:
                requests[self.path] += 1
                sizes[self.path] += len(payload)
            self._answer(b"", "application/x-protobuf")

        def do_GET(self) -> None:
            with lock:
                stats = {path: {"requests": n, "bytes": sizes[path]} for path, n in requests.items()}
            self._answer(json.dumps(stats).encode(), "application/json")

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    try:
        serve()
    except KeyboardInterrupt:
        os._exit(0)
