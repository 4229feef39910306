"""The sidecar container of the shared contract, written out by hand: what `detour inject` adds to a
pod with every setting at its default, in native mode. The library template `detour.sidecar` and the
quickstart's hand-written sidecar are compared with it."""

from __future__ import annotations

import copy
from typing import Any

SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

_DEFAULT_ARGS = [
    "serve",
    "--configmap", "$(POD_NAMESPACE)/detour-routes",
    "--configmap-key", "routes.yaml",
    "--port", "8081",
    "--health-port", "8083",
    "--grpc-port", "8082",
    "--log-level", "info",
]  # fmt: skip

_DEFAULT_CONTAINER: dict[str, Any] = {
    "name": "detour",
    "image": "IMAGE",
    "imagePullPolicy": "IfNotPresent",
    "restartPolicy": "Always",
    "args": _DEFAULT_ARGS,
    "env": [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "ports": [{"name": "detour-health", "containerPort": 8083, "protocol": "TCP"}],
    "startupProbe": {
        "httpGet": {"path": "/healthz", "port": 8083},
        "periodSeconds": 1,
        "failureThreshold": 30,
    },
    "readinessProbe": {
        "httpGet": {"path": "/readyz", "port": 8083},
        "periodSeconds": 5,
        "failureThreshold": 2,
    },
    "livenessProbe": {
        "httpGet": {"path": "/healthz", "port": 8083},
        "periodSeconds": 10,
        "failureThreshold": 3,
    },
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
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


def default_container(image: str) -> dict[str, Any]:
    """A fresh copy, to edit for the settings of one test."""
    container = copy.deepcopy(_DEFAULT_CONTAINER)
    container["image"] = image
    return container


def base_url_env(port: int = 8081) -> list[dict[str, str]]:
    return [
        {"name": "OPENAI_BASE_URL", "value": f"http://127.0.0.1:{port}/v1"},
        {"name": "ANTHROPIC_BASE_URL", "value": f"http://127.0.0.1:{port}"},
    ]


def telemetry_env(endpoint: str, protocol: str | None, service_name: str) -> list[dict[str, Any]]:
    """The variables that telemetry.otlp_endpoint adds after POD_NAMESPACE and POD_NAME."""
    env: list[dict[str, Any]] = [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": endpoint}]
    if protocol:
        env.append({"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": protocol})
    return [
        *env,
        {"name": "OTEL_SERVICE_NAME", "value": service_name},
        {"name": "K8S_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "K8S_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "K8S_NAMESPACE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "K8S_CONTAINER_NAME", "value": "detour"},
    ]
