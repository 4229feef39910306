"""Pod specs as the API server hands them to a mutating webhook: defaulted, as created by kubectl,
by a Deployment (no name yet), with init containers, and so on."""

from __future__ import annotations

import copy
from typing import Any

Pod = dict[str, Any]


def _pod(spec: dict[str, Any], *, name: str | None = "shop", **metadata: Any) -> Pod:
    meta: dict[str, Any] = {"namespace": "apps", "labels": {"app": "shop"}, **metadata}
    if name is not None:
        meta["name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _app(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.example/{name}:1.0",
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "resources": {},
        **extra,
    }


PLAIN = _pod({"containers": [_app()], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"})

SEVERAL_CONTAINERS = _pod(
    {
        "containers": [
            _app("web", ports=[{"containerPort": 8080, "protocol": "TCP"}]),
            _app("worker", env=[{"name": "QUEUE", "value": "jobs"}]),
            _app("metrics", env=[]),
        ],
        "volumes": [{"name": "cache", "emptyDir": {}}],
    }
)

WITH_INIT_CONTAINERS = _pod(
    {
        "initContainers": [_app("migrate", command=["./migrate"]), _app("warm-cache")],
        "containers": [_app()],
    }
)

ENV_ALREADY_SET = _pod(
    {
        "containers": [
            _app(
                env=[
                    {"name": "OPENAI_BASE_URL", "value": "https://gateway.example/v1"},
                    {"name": "LOG_LEVEL", "value": "debug"},
                ]
            )
        ]
    }
)

ALREADY_INJECTED = _pod({"containers": [_app()]}, annotations={"detour.dev/injected": "0.1.0"})

HAS_A_DETOUR_CONTAINER = _pod({"initContainers": [_app("detour")], "containers": [_app()]})

OPTED_OUT = _pod({"containers": [_app()]}, annotations={"detour.dev/inject": "false"})

CONTAINER_MODE = _pod(
    {"containers": [_app(), _app("sidecar-logger")]},
    annotations={"detour.dev/sidecar-mode": "container", "team": "payments"},
)

# A Deployment's pod: the ReplicaSet controller creates it with generateName; admission sees no name.
FROM_A_DEPLOYMENT = _pod(
    {
        "containers": [_app()],
        "serviceAccountName": "shop",
        "securityContext": {"runAsNonRoot": True},
    },
    name=None,
    generateName="shop-7d4b9c6f5-",
    labels={"app.kubernetes.io/name": "shop", "pod-template-hash": "7d4b9c6f5"},
    ownerReferences=[
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "shop-7d4b9c6f5",
            "uid": "0b6bd5b4-7bb0-4a5e-9f5e-8d1a3f0c2b11",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ],
)

CUSTOMISED = _pod(
    {"containers": [_app()]},
    annotations={
        "detour.dev/configmap": "payments-routes",
        "detour.dev/secret": "payments-llm-keys",
        "detour.dev/cpu": "200m",
        "detour.dev/memory": "192Mi",
    },
)

HOST_NETWORK = _pod({"containers": [_app()], "hostNetwork": True})

WINDOWS = _pod({"containers": [_app()], "os": {"name": "windows"}})

WINDOWS_BY_NODE_SELECTOR = _pod({"containers": [_app()], "nodeSelector": {"kubernetes.io/os": "windows"}})

MIRROR = _pod({"containers": [_app()]}, annotations={"kubernetes.io/config.mirror": "5b3c1f"})

JOB_IN_CONTAINER_MODE = _pod(
    {"containers": [_app()], "restartPolicy": "Never"}, annotations={"detour.dev/sidecar-mode": "container"}
)

PORT_CLASH = _pod({"containers": [_app(ports=[{"containerPort": 8081}])]})


def review_of(pod: Pod, *, uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> dict[str, Any]:
    """The AdmissionReview the API server POSTs for a pod CREATE."""
    namespace = pod["metadata"].get("namespace", "apps")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            **({"name": pod["metadata"]["name"]} if "name" in pod["metadata"] else {}),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": copy.deepcopy(pod),
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
