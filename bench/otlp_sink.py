"""An in-process OTLP/HTTP receiver, so "Detour with telemetry exporting" can be measured without a
collector: it accepts every POST (`/v1/traces`, `/v1/metrics`, `/v1/logs`), counts requests and
bytes per path, and answers an empty success.

Detour is pointed at it with the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, protocol
`http/protobuf`, short export intervals). If nothing arrives, telemetry export is not available in
this build and the report says so instead of printing numbers that measure nothing.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from bench.procs import HOST


class OtlpSink:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                payload = self.rfile.read(length) if length else b""
                with sink._lock:
                    sink.requests[self.path] += 1
                    sink.bytes[self.path] += len(payload)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

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
        with self._lock:
            return {path: {"requests": n, "bytes": self.bytes[path]} for path, n in self.requests.items()}

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
