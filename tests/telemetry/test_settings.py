"""Which signals go where, decided from the standard OTEL_* variables alone (docs/architecture.md §6)."""

from __future__ import annotations

import pytest

from sidecar.telemetry.runtime import start_telemetry
from sidecar.telemetry.settings import OtlpTarget, TelemetrySettings, parse_key_values, resource_attributes


def test_nothing_is_exported_without_an_endpoint() -> None:
    settings = TelemetrySettings.from_env({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"})
    assert not settings.enabled
    assert start_telemetry(settings) is None


def test_one_endpoint_turns_on_both_signals_over_http_protobuf_by_default() -> None:
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert settings.traces == OtlpTarget("http/protobuf", "http://collector:4318/v1/traces")
    assert settings.metrics == OtlpTarget("http/protobuf", "http://collector:4318/v1/metrics")
    assert settings.prometheus is None


def test_grpc_uses_the_endpoint_as_given() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    settings = TelemetrySettings.from_env(env)
    assert settings.traces == OtlpTarget("grpc", "http://collector:4317")
    assert settings.metrics == OtlpTarget("grpc", "http://collector:4317")


def test_a_signal_of_its_own_overrides_the_shared_endpoint_protocol_headers_and_timeout() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-shared=1",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:4317",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=s%3Dcret,tenant=a",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false",
    }
    settings = TelemetrySettings.from_env(env)
    assert settings.traces == OtlpTarget(
        "grpc", "https://traces.example:4317", {"api-key": "s=cret", "tenant": "a"}, False, 2.5
    )
    assert settings.metrics == OtlpTarget(
        "http/protobuf", "http://collector:4318/v1/metrics", {"x-shared": "1"}, None, 2.5
    )


def test_headers_never_show_in_the_settings_repr() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20k",
    }
    assert "Bearer" not in repr(TelemetrySettings.from_env(env))


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({"OTEL_TRACES_EXPORTER": "none"}, False, True),
        ({"OTEL_METRICS_EXPORTER": "none"}, True, False),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, True, True),
        ({"OTEL_SDK_DISABLED": "true"}, False, False),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "",
            },
            True,
            False,
        ),
    ],
)
def test_exporter_switches_turn_single_signals_off(env: dict[str, str], traces: bool, metrics: bool) -> None:
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env})
    assert (settings.traces is not None, settings.metrics is not None) == (traces, metrics)


def test_the_metrics_port_serves_prometheus_even_without_a_collector() -> None:
    settings = TelemetrySettings.from_env({}, metrics_port=9464)
    assert settings.enabled
    assert settings.metrics_enabled
    assert settings.prometheus == ("0.0.0.0", 9464)
    assert settings.traces is None
    assert settings.metrics is None


def test_otel_metrics_exporter_prometheus_uses_the_standard_host_and_port() -> None:
    env = {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "9100"}
    assert TelemetrySettings.from_env(env).prometheus == ("0.0.0.0", 9100)
    assert TelemetrySettings.from_env(env, metrics_port=9200, metrics_host="127.0.0.1").prometheus == (
        "127.0.0.1",
        9200,
    )


def test_kubernetes_attributes_come_from_the_downward_api_and_explicit_ones_win() -> None:
    env = {
        "K8S_POD_NAME": "shop-7d9f",
        "K8S_POD_UID": "0b5e",
        "K8S_POD_NAMESPACE": "shop",
        "K8S_NODE_NAME": "node-1",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.node.name=override,team=payments%20core",
    }
    assert resource_attributes(env) == {
        "service.name": "detour",
        "k8s.pod.name": "shop-7d9f",
        "k8s.pod.uid": "0b5e",
        "k8s.namespace.name": "shop",
        "k8s.node.name": "override",
        "team": "payments core",
    }


def test_the_service_name_variable_wins_over_the_resource_attributes() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"}
    assert resource_attributes(env)["service.name"] == "b"
    assert resource_attributes({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a"})["service.name"] == "a"


def test_malformed_key_value_pairs_are_skipped() -> None:
    assert parse_key_values("a=1,,broken,=x,b = 2 ") == {"a": "1", "b": "2"}


def test_content_capture_is_off_unless_the_genai_variable_says_true() -> None:
    assert not TelemetrySettings.from_env({}).capture_content
    variable = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    assert TelemetrySettings.from_env({variable: "true"}).capture_content
    assert not TelemetrySettings.from_env({variable: "yes please"}).capture_content
