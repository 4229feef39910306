"""What injection does to one pod: a pure function from (pod, settings) to a JSONPatch.

The patch, in the order it is applied (JSONPatch is sequential, so the base-URL edits of existing
init containers come before the sidecar shifts their indices):

| step | change |
|---|---|
| 1 | every container and init container without them gets `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL` |
| 2 | the `detour` container: first init container with `restartPolicy: Always` (a native sidecar, which
|   | starts before the app and stops after it), or appended to `containers` in `container` mode |
| 3 | the sidecar's volumes: an `emptyDir` for `/tmp` (the root filesystem is read-only) and its own
|   | projected service-account token (see `sidecar_volumes`) |
| 4 | annotation `detour.dev/injected: <version>` |

A pod is left alone (empty patch, a reason saying why) when it already has a `detour` container or
the `injected` annotation (idempotent: reinvocation, or a pod re-created from an injected spec),
when annotated `detour.dev/inject: "false"`, and when injecting would break it: a host-network pod
(the sidecar would bind the node's loopback), a Windows pod (the image is Linux), a static pod's
mirror, a container already declaring the sidecar's ports, or container mode in a pod that runs to
completion (a regular sidecar container would keep a Job's pod running forever).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.inject.settings import OBJECT_NAME, QUANTITY, InjectorSettings

ANNOTATION_INJECT = "detour.dev/inject"
ANNOTATION_MODE = "detour.dev/sidecar-mode"
ANNOTATION_CONFIGMAP = "detour.dev/configmap"
ANNOTATION_SECRET = "detour.dev/secret"
ANNOTATION_CPU = "detour.dev/cpu"
ANNOTATION_MEMORY = "detour.dev/memory"
ANNOTATION_INJECTED = "detour.dev/injected"

SIDECAR_NAME = "detour"
TMP_VOLUME = "detour-tmp"
TOKEN_VOLUME = "detour-token"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
UID = 65532

Json = dict[str, Any]


@dataclass(frozen=True)
class Injection:
    """The patch for one pod; `skipped` says why it is empty, `warnings` go back to the API server."""

    patch: list[Json]
    skipped: str | None = None
    warnings: list[str] = field(default_factory=list)


def plan_injection(
    pod: Mapping[str, Any], settings: InjectorSettings, *, image: str, version: str
) -> Injection:
    """The JSONPatch that adds the sidecar to `pod` (a core/v1 Pod as JSON). Raises `ValueError`
    when `pod` is not shaped like a pod; the caller allows such a pod unpatched."""
    metadata = _mapping(pod.get("metadata", {}), "metadata")
    spec = _mapping(pod.get("spec"), "spec")
    annotations = _mapping(metadata.get("annotations") or {}, "metadata.annotations")
    labels = _mapping(metadata.get("labels") or {}, "metadata.labels")
    containers = _containers(spec, "containers")
    init_containers = _containers(spec, "initContainers")
    if not containers:
        raise ValueError("spec.containers is empty")

    if annotations.get(ANNOTATION_INJECT) == "false":
        return Injection([], skipped=f"annotation {ANNOTATION_INJECT} is 'false'")
    if ANNOTATION_INJECTED in annotations or any(
        c.get("name") == SIDECAR_NAME for c in (*containers, *init_containers)
    ):
        return Injection([], skipped="already injected")
    unsafe = _why_injecting_would_break(metadata, spec, containers + init_containers, settings)
    if unsafe:
        return Injection([], skipped=unsafe, warnings=[f"detour: not injected: {unsafe}"])

    warnings: list[str] = []
    native = _mode(annotations, settings, warnings) == "native"
    if not native and spec.get("restartPolicy", "Always") != "Always":
        # A regular sidecar container never exits, so a Job's pod would never complete.
        return Injection(
            [],
            skipped="container mode in a pod that runs to completion",
            warnings=["detour: not injected: container mode would keep a run-to-completion pod running"],
        )
    container = sidecar_container(
        settings,
        image=image,
        configmap=_name_annotation(annotations, ANNOTATION_CONFIGMAP, None, warnings) or settings.configmap,
        secret=_name_annotation(annotations, ANNOTATION_SECRET, settings.secret, warnings),
        resources=_resources(annotations, settings, warnings),
        app_name=str(labels.get("app.kubernetes.io/name") or labels.get("app") or SIDECAR_NAME),
        native=native,
    )
    grace = shutdown_grace_for(spec.get("terminationGracePeriodSeconds"))
    if grace is not None:
        container["args"] += ["--shutdown-grace-secs", grace]

    patch: list[Json] = []
    for field_name, present in (("initContainers", init_containers), ("containers", containers)):
        for index, app in enumerate(present):
            patch += _base_url_ops(f"/spec/{field_name}/{index}", app, settings.port)
    if native:
        target = "/spec/initContainers/0" if init_containers else "/spec/initContainers"
        patch.append({"op": "add", "path": target, "value": container if init_containers else [container]})
    else:
        patch.append({"op": "add", "path": "/spec/containers/-", "value": container})
    volumes = spec.get("volumes")
    if not volumes:
        patch.append({"op": "add", "path": "/spec/volumes", "value": sidecar_volumes()})
    else:
        volume_names = {v.get("name") for v in volumes if isinstance(v, Mapping)}
        patch += [
            {"op": "add", "path": "/spec/volumes/-", "value": volume}
            for volume in sidecar_volumes()
            if volume["name"] not in volume_names
        ]
    if metadata.get("annotations"):
        patch.append(
            {"op": "add", "path": f"/metadata/annotations/{_pointer(ANNOTATION_INJECTED)}", "value": version}
        )
    else:
        patch.append({"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION_INJECTED: version}})
    return Injection(patch, warnings=warnings)


def sidecar_container(
    settings: InjectorSettings,
    *,
    image: str,
    configmap: str,
    secret: str | None,
    resources: Mapping[str, Mapping[str, str]],
    app_name: str,
    native: bool,
) -> Json:
    """The `detour` container; the chart's library template `detour.sidecar` renders the same."""
    port = str(settings.port)
    health = settings.health_port
    container: Json = {
        "name": SIDECAR_NAME,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
    }
    if native:
        container["restartPolicy"] = "Always"
    container["args"] = [
        "serve",
        "--configmap", f"$(POD_NAMESPACE)/{configmap}",
        "--configmap-key", settings.configmap_key,
        "--port", port,
        "--health-port", str(health),
        "--grpc-port", str(settings.grpc_port),
        "--log-level", settings.log_level,
    ]  # fmt: skip
    container["env"] = _sidecar_env(settings, app_name)
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    container["ports"] = [{"name": "detour-health", "containerPort": health, "protocol": "TCP"}]
    container["startupProbe"] = _probe("/healthz", health, period_s=1, failures=30)
    container["readinessProbe"] = _probe("/readyz", health, period_s=5, failures=2)
    container["livenessProbe"] = _probe("/healthz", health, period_s=10, failures=3)
    if resources:
        container["resources"] = {kind: dict(values) for kind, values in resources.items()}
    container["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container["volumeMounts"] = [
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
        {"name": TOKEN_VOLUME, "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True},
    ]
    return container


def shutdown_grace_for(termination_grace: object) -> str | None:
    """The sidecar's drain time for a pod that sets its own termination grace period, else None
    (the sidecar's default, 20 s, fits Kubernetes' default 30 s). Like the default it leaves a
    third of the period, at most 10 s, to close connections and flush telemetry before SIGKILL; a
    pod that allows 120 s for long streams lets the sidecar drain them for 110 s."""
    if not isinstance(termination_grace, int) or isinstance(termination_grace, bool) or termination_grace < 1:
        return None
    grace = termination_grace - min(10.0, termination_grace / 3)
    return f"{max(grace, 1.0):g}"


def sidecar_volumes() -> list[Json]:
    """The pod volumes the sidecar mounts: a writable /tmp (the root filesystem is read-only), and
    its own service-account token for watching its ConfigMap. The token is projected like the
    kubelet's `kube-api-access-*` volume because the pod's own may be absent
    (`automountServiceAccountToken: false` keeps API credentials from the *app*; the sidecar still
    needs them) and because admission mounts that one only in the containers it saw."""
    return [
        {"name": TMP_VOLUME, "emptyDir": {}},
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                        }
                    },
                ],
            },
        },
    ]


def _sidecar_env(settings: InjectorSettings, app_name: str) -> list[Json]:
    env: list[Json] = [
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("POD_NAME", "metadata.name"),
    ]
    telemetry = settings.telemetry
    if telemetry.otlp_endpoint:
        env.append({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": telemetry.otlp_endpoint})
        if telemetry.otlp_protocol:
            env.append({"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": telemetry.otlp_protocol})
        env += [
            {"name": "OTEL_SERVICE_NAME", "value": app_name},
            _field_env("K8S_POD_NAME", "metadata.name"),
            _field_env("K8S_POD_UID", "metadata.uid"),
            _field_env("K8S_NAMESPACE_NAME", "metadata.namespace"),
            _field_env("K8S_NODE_NAME", "spec.nodeName"),
            {"name": "K8S_CONTAINER_NAME", "value": SIDECAR_NAME},
        ]
    # A name given in the settings replaces a generated one in place: duplicate names in one
    # container are legal but only the last counts, which hides mistakes.
    position = {entry["name"]: i for i, entry in enumerate(env)}
    for name, value in (*telemetry.env.items(), *settings.env.items()):
        entry = {"name": name, "value": value}
        if name in position:
            env[position[name]] = entry
        else:
            position[name] = len(env)
            env.append(entry)
    return env


def _field_env(name: str, path: str) -> Json:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _probe(path: str, port: int, *, period_s: int, failures: int) -> Json:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s, "failureThreshold": failures}


def _base_url_ops(pointer: str, container: Mapping[str, Any], port: int) -> list[Json]:
    wanted = [
        {"name": "OPENAI_BASE_URL", "value": f"http://127.0.0.1:{port}/v1"},
        {"name": "ANTHROPIC_BASE_URL", "value": f"http://127.0.0.1:{port}"},
    ]
    env = container.get("env")
    if not env:
        return [{"op": "add", "path": f"{pointer}/env", "value": wanted}]
    named = {entry.get("name") for entry in env if isinstance(entry, Mapping)}
    return [{"op": "add", "path": f"{pointer}/env/-", "value": e} for e in wanted if e["name"] not in named]


def _mode(annotations: Mapping[str, Any], settings: InjectorSettings, warnings: list[str]) -> str:
    mode = annotations.get(ANNOTATION_MODE)
    if mode is None:
        return settings.sidecar_mode
    if mode in ("native", "container"):
        return str(mode)
    warnings.append(f"detour: ignored {ANNOTATION_MODE}={str(mode)[:40]!r}; expected native or container")
    return settings.sidecar_mode


def _name_annotation(
    annotations: Mapping[str, Any], key: str, default: str | None, warnings: list[str]
) -> str | None:
    value = annotations.get(key)
    if value is None:
        return default
    if isinstance(value, str) and len(value) <= 253 and OBJECT_NAME.fullmatch(value):
        return value
    warnings.append(f"detour: ignored {key}: not a valid object name")
    return default


def _resources(
    annotations: Mapping[str, Any], settings: InjectorSettings, warnings: list[str]
) -> dict[str, dict[str, str]]:
    """The settings' resources, with `detour.dev/cpu` / `detour.dev/memory` applied: memory is the
    request and the limit (a sidecar should not be OOM-killed for the node's sake); cpu is the
    request, and the limit too where one is configured, so the request never exceeds it."""
    resources = settings.resources.as_kubernetes()
    for key, name in ((ANNOTATION_CPU, "cpu"), (ANNOTATION_MEMORY, "memory")):
        value = annotations.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not QUANTITY.fullmatch(value):
            warnings.append(f"detour: ignored {key}: not a Kubernetes quantity")
            continue
        resources.setdefault("requests", {})[name] = value
        if name == "memory" or name in resources.get("limits", {}):
            resources.setdefault("limits", {})[name] = value
    return resources


def _why_injecting_would_break(
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    containers: list[Mapping[str, Any]],
    settings: InjectorSettings,
) -> str | None:
    """A reason the pod would not start, or would break others, with the sidecar; None if none."""
    if spec.get("hostNetwork") is True:
        return "a hostNetwork pod shares the node's loopback (and its ports) with every other"
    node_selector = spec.get("nodeSelector")
    os_name = spec["os"].get("name") if isinstance(spec.get("os"), Mapping) else None
    if os_name == "windows" or (
        isinstance(node_selector, Mapping) and node_selector.get("kubernetes.io/os") == "windows"
    ):
        return "a Windows pod (the image is Linux)"
    annotations = metadata.get("annotations") or {}
    if "kubernetes.io/config.mirror" in annotations:
        return "a static pod's mirror (the kubelet runs the static pod as written)"
    return _port_clash(containers, {settings.port, settings.health_port, settings.grpc_port} - {0})


def _port_clash(containers: list[Mapping[str, Any]], ports: set[int]) -> str | None:
    for container in containers:
        for declared in container.get("ports") or []:
            if isinstance(declared, Mapping) and declared.get("containerPort") in ports:
                return (
                    f"container {str(container.get('name'))[:63]!r} uses port "
                    f"{declared['containerPort']}, which the sidecar needs"
                )
    return None


def _containers(spec: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = spec.get(key) or []
    if not isinstance(value, list) or not all(isinstance(c, Mapping) for c in value):
        raise ValueError(f"spec.{key} must be a list of containers")
    return value


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object")
    return value


def _pointer(key: str) -> str:
    """A key as a JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")
