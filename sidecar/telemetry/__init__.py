"""Telemetry: OpenTelemetry spans and metrics for rate limits, failovers and upstream attempts
(docs/architecture.md §6).

- `settings`: which signals to export, from the standard `OTEL_*` variables (pure, no OTel import);
- `runtime`: `start_telemetry` builds the SDK providers and exporters — imported only when used;
- `hooks`: the routing layer's `RequestTracing` protocol implemented with spans and metrics;
- `instruments`: the metric instruments and the bound on model-valued attributes;
- `usage`: model, token usage and finish reasons read from upstream answers.

Importing this package loads only `settings`, so `detour serve` with telemetry off stays light.
"""

from sidecar.telemetry.settings import TelemetrySettings

__all__ = ["TelemetrySettings"]
