"""Run the real sidecar with telemetry built from an environment, as `detour serve` does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import MetricReader

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.telemetry import TelemetrySettings
from sidecar.telemetry.runtime import Telemetry, start_telemetry
from tests.support.running import serve_sidecar

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
SECRET = "sk-client-secret-123"
AUTH = {"authorization": f"Bearer {SECRET}"}
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"
# Metrics leave only when flushed: a long interval keeps the periodic export out of the way.
QUIET = {"OTEL_METRIC_EXPORT_INTERVAL": "3600000", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"}


@dataclass
class Traced:
    url: str
    telemetry: Telemetry
    sidecar: Sidecar

    async def flush(self) -> None:
        """Export everything recorded so far, off the event loop (the exporters block)."""
        assert await asyncio.to_thread(self.telemetry.force_flush, 5_000)

    async def flush_until(self, arrived: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Flush until `arrived()`: a stream's SERVER span ends just after its last byte left, so
        the client can have read everything a moment before the span exists."""
        async with asyncio.timeout(timeout_s):
            while True:
                await self.flush()
                if arrived():
                    return
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def traced_sidecar(
    text: str,
    env: Mapping[str, str],
    *,
    metrics_port: int | None = None,
    metric_readers: Sequence[MetricReader] = (),
) -> AsyncIterator[Traced]:
    settings = TelemetrySettings.from_env(env, metrics_port=metrics_port, metrics_host="127.0.0.1")
    telemetry = start_telemetry(settings, metric_readers=metric_readers)
    assert telemetry is not None
    sidecar = Sidecar(load_config_text(text, source="test", env={}), telemetry=telemetry)
    try:
        async with serve_sidecar(sidecar) as url:
            yield Traced(url, telemetry, sidecar)
    finally:
        await asyncio.to_thread(telemetry.shutdown)
