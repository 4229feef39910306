"""What telemetry should do, read from the standard `OTEL_*` variables (docs/architecture.md §6) — and
nothing more.

Pure: a mapping in (the environment), a frozen `TelemetrySettings` out, no OpenTelemetry import, so
`detour serve` can decide at almost no cost that telemetry stays off. Exporting a signal is on when
an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or the signal's own) and the signal's
`OTEL_{TRACES,METRICS}_EXPORTER` is not `none`; `OTEL_SDK_DISABLED=true` turns everything off.
Metrics can also be scraped by Prometheus (`--metrics-port`, or `OTEL_METRICS_EXPORTER=prometheus`).

Variables the exporters themselves read (compression, TLS certificates, batch sizes) are left to
them; the ones read here decide whether, where and how long to export. `OTEL_EXPORTER_OTLP_TIMEOUT`
is milliseconds, as the OpenTelemetry specification says (the Python exporters alone read seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

log = logging.getLogger("detour.telemetry")

Protocol = Literal["grpc", "http/protobuf"]
Signal = Literal["traces", "metrics"]

DEFAULT_SERVICE_NAME = "detour"
DEFAULT_PROMETHEUS_HOST = "0.0.0.0"  # a scrape comes from outside the pod
CAPTURE_CONTENT_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SUCCESS_RATIO_VAR = "DETOUR_TRACES_SUCCESS_RATIO"

# Downward-API variables (see manifests/observability and docs/telemetry.md) → resource attributes.
KUBERNETES_VARIABLES = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_POD_UID": "k8s.pod.uid",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_POD_NAMESPACE": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
    "K8S_CONTAINER_NAME": "k8s.container.name",
}
_SIGNAL_PATHS: dict[Signal, str] = {"traces": "v1/traces", "metrics": "v1/metrics"}


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where one signal is exported. `endpoint` is the full URL for http/protobuf (signal path
    included) and the collector's address for grpc."""

    protocol: Protocol
    endpoint: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold collector keys
    insecure: bool | None = None  # grpc only; None: decided by the endpoint's scheme
    timeout_s: float | None = None  # None: the exporter's default (10 s)


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    traces: OtlpTarget | None = None
    metrics: OtlpTarget | None = None
    prometheus: tuple[str, int] | None = None  # (host, port) of the scrape endpoint
    resource: Mapping[str, str] = field(default_factory=dict)
    sampler: str = "parentbased_always_on"
    sampler_arg: str | None = None
    metric_interval_ms: int = 60_000
    capture_content: bool = False
    success_ratio: float = 1.0  # DETOUR_TRACES_SUCCESS_RATIO: plain successes kept (telemetry.sampling)

    @property
    def enabled(self) -> bool:
        return self.traces is not None or self.metrics is not None or self.prometheus is not None

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics is not None or self.prometheus is not None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
    ) -> TelemetrySettings:
        """`metrics_port` (the `--metrics-port` flag) wins over `OTEL_EXPORTER_PROMETHEUS_PORT`."""
        if _truthy(env.get("OTEL_SDK_DISABLED")):
            return cls()
        metric_exporters = _exporters(env, "OTEL_METRICS_EXPORTER")
        prometheus: tuple[str, int] | None = None
        if metrics_port is not None or "prometheus" in metric_exporters:
            host = metrics_host or env.get("OTEL_EXPORTER_PROMETHEUS_HOST") or DEFAULT_PROMETHEUS_HOST
            port = (
                metrics_port if metrics_port is not None else _int(env, "OTEL_EXPORTER_PROMETHEUS_PORT", 9464)
            )
            prometheus = (host, port)
        return cls(
            traces=_target(env, "traces") if "otlp" in _exporters(env, "OTEL_TRACES_EXPORTER") else None,
            metrics=_target(env, "metrics") if "otlp" in metric_exporters else None,
            prometheus=prometheus,
            resource=resource_attributes(env),
            sampler=(env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower(),
            sampler_arg=env.get("OTEL_TRACES_SAMPLER_ARG"),
            metric_interval_ms=_int(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
            capture_content=_truthy(env.get(CAPTURE_CONTENT_VAR)),
            success_ratio=_ratio(env, SUCCESS_RATIO_VAR),
        )


def resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """Kubernetes attributes from the downward API, then `OTEL_RESOURCE_ATTRIBUTES` (which wins),
    then `OTEL_SERVICE_NAME` (which wins over both); `service.name` defaults to `detour`."""
    attributes = {"service.name": DEFAULT_SERVICE_NAME}
    for variable, key in KUBERNETES_VARIABLES.items():
        value = env.get(variable)
        if value:
            attributes[key] = value
    attributes.update(parse_key_values(env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    service_name = env.get("OTEL_SERVICE_NAME")
    if service_name:
        attributes["service.name"] = service_name
    return attributes


def parse_key_values(text: str) -> dict[str, str]:
    """The W3C-baggage-like `key1=value1,key2=value2` of OTEL_RESOURCE_ATTRIBUTES and
    OTEL_EXPORTER_OTLP_HEADERS (values percent-decoded); malformed pairs are skipped."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            if item.strip():
                log.warning("ignoring a malformed key=value pair in an OTEL_* variable")
            continue
        pairs[unquote(key)] = unquote(value.strip())
    return pairs


def _target(env: Mapping[str, str], signal: Signal) -> OtlpTarget | None:
    upper = signal.upper()
    signal_endpoint = env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    base_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not signal_endpoint and not base_endpoint:
        return None
    protocol = _protocol(
        env.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    if signal_endpoint:
        endpoint = signal_endpoint
    elif protocol == "grpc":
        endpoint = base_endpoint or ""
    else:
        endpoint = f"{(base_endpoint or '').removesuffix('/')}/{_SIGNAL_PATHS[signal]}"
    headers = parse_key_values(
        env.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    )
    insecure_text = env.get(f"OTEL_EXPORTER_OTLP_{upper}_INSECURE") or env.get("OTEL_EXPORTER_OTLP_INSECURE")
    insecure = None if insecure_text is None else _truthy(insecure_text)
    timeout_name = f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT"
    timeout_ms = _int(env, timeout_name if env.get(timeout_name) else "OTEL_EXPORTER_OTLP_TIMEOUT", 0)
    return OtlpTarget(protocol, endpoint, headers, insecure, timeout_ms / 1000 if timeout_ms > 0 else None)


def _protocol(value: str | None) -> Protocol:
    text = (value or "http/protobuf").strip().lower()
    if text == "grpc":
        return "grpc"
    if text != "http/protobuf":
        log.warning("OTLP protocol %r is not supported; using http/protobuf", text)
    return "http/protobuf"


def _exporters(env: Mapping[str, str], name: str) -> set[str]:
    """The comma-separated exporter list; unset means `otlp`. Unknown names are reported once."""
    names = {part.strip().lower() for part in env.get(name, "otlp").split(",") if part.strip()}
    if "none" in names:
        return set()
    unknown = names - {"otlp", "prometheus"}
    if unknown:
        log.warning("%s: exporters %s are not supported (otlp, prometheus, none)", name, sorted(unknown))
    return names


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", name, text, default)
        return default


def _ratio(env: Mapping[str, str], name: str) -> float:
    """A fraction in [0, 1]; unset, or anything else (reported), is 1.0: everything kept."""
    text = env.get(name)
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        log.warning("%s=%r is not a number from 0 to 1; keeping every trace", name, text)
        return 1.0
    return value


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"
