"""What injection does to a pod, decided without a server: apply each patch with jsonpatch and
check the result as the API server would (strict schema) and as the kubelet would run it."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from sidecar.inject.patch import plan_injection
from sidecar.inject.settings import InjectorSettings, parse_injector_settings
from tests.charts.contract import SECURITY_CONTEXT
from tests.inject import pods
from tests.support.kube_schema import assert_valid

IMAGE = "registry.example/detour:0.1.0"
BASE_URLS = {"OPENAI_BASE_URL": "http://127.0.0.1:8081/v1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:8081"}


def inject(pod: dict[str, Any], settings: InjectorSettings | None = None) -> tuple[dict[str, Any], Any]:
    injection = plan_injection(pod, settings or InjectorSettings(), image=IMAGE, version="0.1.0")
    patched = jsonpatch.apply_patch(pod, injection.patch)
    assert_valid(patched)
    return patched, injection


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container.get("env", [])}


def test_a_plain_pod_gets_a_native_sidecar_first_and_base_urls() -> None:
    patched, injection = inject(pods.PLAIN)

    sidecar = patched["spec"]["initContainers"][0]
    assert sidecar["name"] == "detour"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == IMAGE
    assert sidecar["args"] == [
        "serve", "--configmap", "$(POD_NAMESPACE)/detour-routes", "--configmap-key", "routes.yaml",
        "--port", "8081", "--health-port", "8083", "--grpc-port", "8082", "--log-level", "info",
    ]  # fmt: skip
    assert env_of(sidecar)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert sidecar["securityContext"] == SECURITY_CONTEXT
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ):
        assert sidecar[probe]["httpGet"] == {"path": path, "port": 8083}
    assert sidecar["ports"] == [{"name": "detour-health", "containerPort": 8083, "protocol": "TCP"}]
    assert sidecar["volumeMounts"] == [
        {"name": "detour-tmp", "mountPath": "/tmp"},
        {
            "name": "detour-token",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True,
        },
    ]
    volumes = {volume["name"]: volume for volume in patched["spec"]["volumes"]}
    assert volumes["detour-tmp"] == {"name": "detour-tmp", "emptyDir": {}}
    token_sources = volumes["detour-token"]["projected"]["sources"]
    assert [next(iter(source)) for source in token_sources] == [
        "serviceAccountToken",
        "configMap",
        "downwardAPI",
    ]
    assert env_of(patched["spec"]["containers"][0]) == BASE_URLS
    assert patched["metadata"]["annotations"] == {"detour.dev/injected": "0.1.0"}
    assert injection.warnings == []
    assert "envFrom" not in sidecar, "no Secret configured, so none referenced"


def test_every_app_container_gets_base_urls_and_keeps_its_own_env() -> None:
    patched, _ = inject(pods.SEVERAL_CONTAINERS)

    web, worker, metrics = patched["spec"]["containers"]
    assert env_of(web) == BASE_URLS
    assert env_of(worker) == {"QUEUE": "jobs", **BASE_URLS}
    assert env_of(metrics) == BASE_URLS
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["cache", "detour-tmp", "detour-token"]


def test_init_containers_get_base_urls_and_the_sidecar_starts_before_them() -> None:
    patched, _ = inject(pods.WITH_INIT_CONTAINERS)

    names = [c["name"] for c in patched["spec"]["initContainers"]]
    assert names == ["detour", "migrate", "warm-cache"]
    for container in patched["spec"]["initContainers"][1:]:
        assert env_of(container) == BASE_URLS
    assert patched["spec"]["initContainers"][1]["command"] == ["./migrate"], "nothing else changed"


def test_a_base_url_the_app_already_sets_is_kept() -> None:
    patched, _ = inject(pods.ENV_ALREADY_SET)

    env = env_of(patched["spec"]["containers"][0])
    assert env["OPENAI_BASE_URL"] == "https://gateway.example/v1"
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8081"
    assert env["LOG_LEVEL"] == "debug"


@pytest.mark.parametrize(
    ("pod", "reason"),
    [
        (pods.ALREADY_INJECTED, "already injected"),
        (pods.HAS_A_DETOUR_CONTAINER, "already injected"),
        (pods.OPTED_OUT, "annotation detour.dev/inject is 'false'"),
    ],
)
def test_a_pod_already_injected_or_opted_out_gets_an_empty_patch(pod: dict[str, Any], reason: str) -> None:
    patched, injection = inject(pod)

    assert injection.patch == []
    assert injection.skipped == reason
    assert patched == pod


def test_injecting_the_result_again_changes_nothing() -> None:
    patched, _ = inject(pods.WITH_INIT_CONTAINERS)
    again, injection = inject(patched)

    assert injection.patch == []
    assert again == patched


@pytest.mark.parametrize(
    ("termination_grace", "drain"), [(None, None), (30, "20"), (120, "110"), (9, "6"), (1, "1"), (0, None)]
)
def test_the_sidecar_drains_within_the_pods_own_termination_grace_period(
    termination_grace: int | None, drain: str | None
) -> None:
    pod = {**pods.CONTAINER_MODE, "spec": {**pods.CONTAINER_MODE["spec"]}}
    if termination_grace is not None:
        pod["spec"]["terminationGracePeriodSeconds"] = termination_grace
    patched, _ = inject(pod)

    args = patched["spec"]["containers"][-1]["args"]
    if drain is None:
        assert "--shutdown-grace-secs" not in args, "the sidecar's default fits the default period"
    else:
        assert args[args.index("--shutdown-grace-secs") + 1] == drain


def test_container_mode_appends_a_regular_container_without_restart_policy() -> None:
    patched, _ = inject(pods.CONTAINER_MODE)

    assert "initContainers" not in patched["spec"]
    names = [c["name"] for c in patched["spec"]["containers"]]
    assert names == ["app", "sidecar-logger", "detour"]
    assert "restartPolicy" not in patched["spec"]["containers"][2]
    assert patched["metadata"]["annotations"]["team"] == "payments", "existing annotations are kept"
    assert patched["metadata"]["annotations"]["detour.dev/injected"] == "0.1.0"


def test_the_sidecar_can_watch_its_configmap_when_the_app_mounts_no_token() -> None:
    pod = {**pods.PLAIN, "spec": {**pods.PLAIN["spec"], "automountServiceAccountToken": False}}
    patched, _ = inject(pod)

    mounts = {m["mountPath"]: m["name"] for m in patched["spec"]["initContainers"][0]["volumeMounts"]}
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"] == "detour-token"
    assert "volumeMounts" not in patched["spec"]["containers"][0], "the app still gets no credentials"


def test_a_job_in_native_mode_is_injected_because_a_native_sidecar_ends_with_it() -> None:
    pod = {**pods.PLAIN, "spec": {**pods.PLAIN["spec"], "restartPolicy": "Never"}}
    patched, _ = inject(pod)

    assert patched["spec"]["initContainers"][0]["restartPolicy"] == "Always"


def test_container_mode_can_be_the_injector_default() -> None:
    patched, _ = inject(pods.PLAIN, InjectorSettings(sidecar_mode="container"))

    assert [c["name"] for c in patched["spec"]["containers"]] == ["app", "detour"]


def test_a_deployments_pod_without_a_name_is_injected_with_its_app_as_service_name() -> None:
    settings = parse_injector_settings("telemetry: {otlp_endpoint: 'http://collector.observability:4318'}")
    patched, _ = inject(pods.FROM_A_DEPLOYMENT, settings)

    sidecar = patched["spec"]["initContainers"][0]
    env = env_of(sidecar)
    assert env["OTEL_SERVICE_NAME"] == "shop"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.observability:4318"
    assert env["K8S_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["K8S_CONTAINER_NAME"] == "detour"
    assert "name" not in patched["metadata"]


def test_annotations_choose_configmap_secret_and_resources() -> None:
    settings = parse_injector_settings("resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: '1'}}")
    patched, injection = inject(pods.CUSTOMISED, settings)

    sidecar = patched["spec"]["initContainers"][0]
    assert "$(POD_NAMESPACE)/payments-routes" in sidecar["args"]
    assert sidecar["envFrom"] == [{"secretRef": {"name": "payments-llm-keys"}}]
    assert sidecar["resources"] == {
        "requests": {"cpu": "200m", "memory": "192Mi"},
        "limits": {"cpu": "200m", "memory": "192Mi"},
    }
    assert injection.warnings == []


def test_invalid_annotations_are_ignored_with_a_warning() -> None:
    pod = {
        **pods.PLAIN,
        "metadata": {
            **pods.PLAIN["metadata"],
            "annotations": {
                "detour.dev/cpu": "lots",
                "detour.dev/memory": "-1Mi",
                "detour.dev/configmap": "Not_A_Name",
                "detour.dev/sidecar-mode": "ambient",
            },
        },
    }
    patched, injection = inject(pod)

    sidecar = patched["spec"]["initContainers"][0]
    assert sidecar["resources"]["requests"]["cpu"] == "50m"
    assert "$(POD_NAMESPACE)/detour-routes" in sidecar["args"]
    assert sidecar["resources"]["limits"]["memory"] == "256Mi", "a negative quantity is ignored"
    assert len(injection.warnings) == 4
    assert all(warning.startswith("detour: ignored detour.dev/") for warning in injection.warnings)


def test_settings_env_replaces_a_generated_variable_in_place() -> None:
    settings = parse_injector_settings(
        "telemetry: {otlp_endpoint: 'http://c:4317', otlp_protocol: grpc, env: {OTEL_SERVICE_NAME: llm}}\n"
        "env: {DETOUR_LOG_LEVEL: debug}\nsecret: llm-keys\n"
    )
    patched, _ = inject(pods.PLAIN, settings)

    env = patched["spec"]["initContainers"][0]["env"]
    names = [entry["name"] for entry in env]
    assert len(names) == len(set(names)), "no variable is defined twice"
    assert env_of(patched["spec"]["initContainers"][0])["OTEL_SERVICE_NAME"] == "llm"
    assert names[-1] == "DETOUR_LOG_LEVEL"
    assert env_of(patched["spec"]["initContainers"][0])["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"


@pytest.mark.parametrize(
    "pod",
    [
        pods.HOST_NETWORK,
        pods.WINDOWS,
        pods.WINDOWS_BY_NODE_SELECTOR,
        pods.MIRROR,
        pods.PORT_CLASH,
        pods.JOB_IN_CONTAINER_MODE,
    ],
)
def test_a_pod_the_sidecar_would_break_is_left_alone_with_a_warning(pod: dict[str, Any]) -> None:
    _, injection = inject(pod)

    assert injection.patch == []
    assert len(injection.warnings) == 1
    assert injection.warnings[0].startswith("detour:")


@pytest.mark.parametrize(
    "pod",
    [
        {"metadata": {}, "spec": {"containers": []}},
        {"metadata": {}, "spec": "nope"},
        {"metadata": {}},
        {"metadata": [], "spec": {"containers": [{"name": "a"}]}},
        {"metadata": {}, "spec": {"containers": [{"name": "a"}], "initContainers": {"name": "b"}}},
    ],
)
def test_a_pod_not_shaped_like_a_pod_raises_value_error(pod: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be|is empty"):
        plan_injection(pod, InjectorSettings(), image=IMAGE, version="0.1.0")
