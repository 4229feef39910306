"""Library mode: a chart that depends on charts/detour and adds the sidecar with `detour.sidecar`
(tests/charts/library-consumer) renders the container of the shared contract, exactly."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.inject.patch import sidecar_container, sidecar_volumes
from sidecar.inject.settings import InjectorSettings
from tests.charts.contract import (
    SECURITY_CONTEXT,
    base_url_env,
    default_container,
    telemetry_env,
)
from tests.charts.helm import Helm, HelmFailed
from tests.charts.paths import CHART, LIBRARY_CONSUMER
from tests.support.kube_schema import assert_valid

DEFAULT_IMAGE = "ghcr.io/detour-dev/detour:0.1.0"
# The first test of a session may download helm (tests/charts/helm.py); each helm call has its own
# 60 s limit.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the consumer chart with charts/detour as its dependency, as `helm dependency build`
    would place it (copied rather than packaged: faster, and nothing is written into the tree)."""
    chart = tmp_path_factory.mktemp("library") / "library-consumer"
    shutil.copytree(LIBRARY_CONSUMER, chart)
    shutil.copytree(CHART, chart / "charts" / "detour")
    return chart


@pytest.fixture(scope="module")
def deployments(helm: Helm, consumer: Path) -> dict[str, dict[str, Any]]:
    objects = helm.template(consumer, release="shop", namespace="shop")
    return {obj["metadata"]["name"]: obj for obj in objects}


def pod(deployments: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return deployments[name]["spec"]["template"]["spec"]


def sidecar_of(deployments: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    spec = pod(deployments, name)
    found = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == "detour"]
    assert len(found) == 1
    return found[0]


def test_the_consumer_renders_only_its_own_deployments(deployments: dict[str, dict[str, Any]]) -> None:
    assert sorted(deployments) == ["container-mode", "defaults", "everything", "named"]
    assert {obj["kind"] for obj in deployments.values()} == {"Deployment"}


def test_the_consumer_deployments_are_valid_kubernetes_objects(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for deployment in deployments.values():
        assert_valid(deployment)


def test_with_default_settings_the_sidecar_is_the_contract_container(
    deployments: dict[str, dict[str, Any]],
) -> None:
    spec = pod(deployments, "defaults")
    assert spec["initContainers"] == [default_container(DEFAULT_IMAGE)]


def test_every_setting_reaches_the_container_as_the_contract_says(
    deployments: dict[str, dict[str, Any]],
) -> None:
    args = [
        "serve",
        "--configmap", "$(POD_NAMESPACE)/llm-routes",
        "--configmap-key", "detour.yaml",
        "--port", "9081",
        "--health-port", "9083",
        "--grpc-port", "9082",
        "--log-level", "debug",
    ]  # fmt: skip
    expected = {
        "name": "detour",
        "image": "registry.example.com/detour:0.1.0",
        "imagePullPolicy": "Always",
        "restartPolicy": "Always",
        "args": args,
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability.svc:4317"},
            {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"},
            # telemetry.env names OTEL_SERVICE_NAME: it replaces the derived "shop" in place.
            {"name": "OTEL_SERVICE_NAME", "value": "shop-llm"},
            {"name": "K8S_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "K8S_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "K8S_NAMESPACE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "K8S_CONTAINER_NAME", "value": "detour"},
            # telemetry.env, then env; env's OTEL_TRACES_SAMPLER replaces telemetry's in place.
            {"name": "OTEL_TRACES_SAMPLER", "value": "always_on"},
            {"name": "DETOUR_EXTRA", "value": "1"},
        ],
        "envFrom": [{"secretRef": {"name": "llm-keys"}}],
        "ports": [{"name": "detour-health", "containerPort": 9083, "protocol": "TCP"}],
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": 9083},
            "periodSeconds": 1,
            "failureThreshold": 30,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 9083},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 9083},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": [
            {"name": "detour-tmp", "mountPath": "/tmp"},
            {
                "name": "detour-token",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
    }
    assert pod(deployments, "everything")["initContainers"] == [expected]


def test_in_container_mode_the_sidecar_is_a_regular_container_without_restart_policy(
    deployments: dict[str, dict[str, Any]],
) -> None:
    spec = pod(deployments, "container-mode")
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["app", "detour"]
    expected = default_container(DEFAULT_IMAGE)
    del expected["restartPolicy"]
    del expected["resources"]  # resources: {} gives none
    expected["env"] += telemetry_env("http://otel-collector.observability.svc:4318", None, "search")
    assert spec["containers"][1] == expected


@pytest.mark.parametrize(
    ("deployment", "service_name"),
    [("everything", "shop-llm"), ("container-mode", "search"), ("named", "billing")],
    ids=["from telemetry.env", "from the label app", "from appName over the labels"],
)
def test_the_otel_service_name_is_derived_as_the_injector_does(
    deployments: dict[str, dict[str, Any]], deployment: str, service_name: str
) -> None:
    env = {e["name"]: e.get("value") for e in sidecar_of(deployments, deployment)["env"]}
    assert env["OTEL_SERVICE_NAME"] == service_name


def test_app_containers_get_the_base_urls_and_the_pod_gets_the_tmp_volume(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for name, port in [("defaults", 8081), ("everything", 9081), ("container-mode", 8081)]:
        spec = pod(deployments, name)
        app = next(c for c in spec["containers"] if c["name"] == "app")
        assert app["env"] == base_url_env(port), name
        assert spec["volumes"] == sidecar_volumes(), name


def render_variant(helm: Helm, consumer: Path, settings: dict[str, str]) -> None:
    helm.template(consumer, set_values={f"variants.broken.{key}": value for key, value in settings.items()})


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"image": "x", "configmap": "routes"}, 'unknown setting "configmap"'),
        ({"configMap": "routes"}, '"image" is required'),
        ({"image": "x", "mode": "sidecar"}, "mode must be native or container"),
        ({"image": "x", "logLevel": "verbose"}, "logLevel must be"),
        ({"image": "x", "port": "8083"}, "port and healthPort must differ"),
    ],
    ids=["an unknown setting", "no image", "an unknown mode", "an unknown log level", "one port twice"],
)
def test_the_library_refuses_settings_it_cannot_honour(
    helm: Helm, consumer: Path, settings: dict[str, str], complaint: str
) -> None:
    with pytest.raises(HelmFailed, match=complaint):
        render_variant(helm, consumer, settings)


def injector_settings(variant: dict[str, Any]) -> InjectorSettings:
    """The inject.yaml the chart would write for these library settings (Helm sorts map keys)."""
    telemetry = variant.get("telemetry", {})
    return InjectorSettings.model_validate(
        {
            key: value
            for key, value in {
                "configmap": variant.get("configMap"),
                "configmap_key": variant.get("configMapKey"),
                "secret": variant.get("secret"),
                "sidecar_mode": variant.get("mode"),
                "image_pull_policy": variant.get("imagePullPolicy"),
                "port": variant.get("port"),
                "health_port": variant.get("healthPort"),
                "grpc_port": variant.get("grpcPort"),
                "log_level": variant.get("logLevel"),
                "resources": variant.get("resources"),
                "telemetry": {
                    "otlp_endpoint": telemetry.get("otlpEndpoint"),
                    "otlp_protocol": telemetry.get("otlpProtocol"),
                    "env": dict(sorted(telemetry.get("env", {}).items())),
                },
                "env": dict(sorted(variant.get("env", {}).items())),
            }.items()
            if value is not None
        }
    )


@pytest.mark.parametrize("name", ["defaults", "everything", "container-mode", "named"])
def test_the_library_renders_exactly_what_the_injector_adds(
    deployments: dict[str, dict[str, Any]], name: str
) -> None:
    variant = yaml.safe_load((LIBRARY_CONSUMER / "values.yaml").read_text())["variants"][name]
    settings = injector_settings(variant)
    labels = variant.get("podLabels", {})
    from_injector = sidecar_container(
        settings,
        image=variant["image"],
        configmap=settings.configmap,
        secret=settings.secret,
        resources=settings.resources.as_kubernetes(),
        app_name=variant.get("appName")
        or labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or "detour",
        native=settings.sidecar_mode == "native",
    )

    assert sidecar_of(deployments, name) == from_injector
