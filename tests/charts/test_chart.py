"""charts/detour, rendered with `helm template`: lint, every object valid for Kubernetes, and the
properties that matter checked on the objects themselves (webhook safety and selection, TLS, RBAC,
the injector's inject.yaml, the values schema)."""

from __future__ import annotations

import base64
import datetime
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import sidecar
from sidecar.config.loader import load_config_text
from sidecar.inject.settings import parse_injector_settings
from tests.charts.contract import SECURITY_CONTEXT
from tests.charts.helm import Helm, HelmFailed
from tests.charts.paths import CHART, VALUES_ALL
from tests.support.kube_schema import assert_valid, object_name

NAMESPACE = "detour-system"
# The first test of a session may download helm (tests/charts/helm.py); each helm call has its own
# 60 s limit.
pytestmark = pytest.mark.timeout(300)
Objects = list[dict[str, Any]]
PROVIDER_ENV = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}


@pytest.fixture(scope="module")
def default_objects(helm: Helm) -> Objects:
    return helm.template(CHART, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def all_objects(helm: Helm) -> Objects:
    return helm.template(CHART, values=[VALUES_ALL], namespace=NAMESPACE)


@pytest.fixture(scope="module", params=["default", "all-options"])
def objects(request: pytest.FixtureRequest) -> Objects:
    return request.getfixturevalue("default_objects" if request.param == "default" else "all_objects")


def of_kind(objects: Objects, kind: str) -> Objects:
    return [obj for obj in objects if obj["kind"] == kind]


def only(objects: Objects, kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[object_name(o) for o in found]}"
    return found[0]


def named(objects: Objects, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for obj in of_kind(objects, kind):
        if obj["metadata"]["name"] == name and obj["metadata"].get("namespace") == namespace:
            return obj
    raise AssertionError(f"no {kind} {namespace}/{name} in {[object_name(o) for o in objects]}")


def injector_container(objects: Objects) -> dict[str, Any]:
    (container,) = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def webhooks(objects: Objects) -> list[dict[str, Any]]:
    return only(objects, "MutatingWebhookConfiguration")["webhooks"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector, as the API server evaluates it."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# --- lint and validity ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[], [VALUES_ALL]], ids=["default", "all-options"])
def test_the_chart_passes_helm_lint_strict(helm: Helm, values: list[Path]) -> None:
    result = helm.lint(CHART, values=values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


def test_every_rendered_object_is_valid_for_kubernetes_1_29(objects: Objects) -> None:
    assert objects
    for obj in objects:
        assert_valid(obj)


def test_the_all_options_render_includes_the_cert_manager_objects(all_objects: Objects) -> None:
    kinds = sorted(obj["kind"] for obj in all_objects if obj["apiVersion"] == "cert-manager.io/v1")
    assert kinds == ["Certificate", "Certificate", "Issuer", "Issuer"]


def test_the_default_install_is_the_injector_its_tls_and_the_sidecar_cluster_role(
    default_objects: Objects,
) -> None:
    assert sorted(object_name(obj) for obj in default_objects) == sorted(
        [
            f"ConfigMap {NAMESPACE}/detour-injector-config",
            f"Deployment {NAMESPACE}/detour-injector",
            f"PodDisruptionBudget {NAMESPACE}/detour-injector",
            f"Secret {NAMESPACE}/detour-injector-tls",
            f"Service {NAMESPACE}/detour-injector",
            f"ServiceAccount {NAMESPACE}/detour-injector",
            "ClusterRole /detour-sidecar",
            "MutatingWebhookConfiguration /detour",
        ]
    )


def test_every_object_carries_the_standard_labels(objects: Objects) -> None:
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "detour-0.1.0", object_name(obj)
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == "detour"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/part-of"} <= set(labels)


def test_common_labels_reach_every_object(all_objects: Objects) -> None:
    for obj in all_objects:
        assert obj["metadata"]["labels"]["example.com/team"] == "platform", object_name(obj)


# --- the injector --------------------------------------------------------------------------------


def test_the_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == sidecar.__version__


def test_the_injector_runs_detour_inject_with_the_contract_flags(default_objects: Objects) -> None:
    container = injector_container(default_objects)
    assert container["image"] == f"ghcr.io/detour-dev/detour:{sidecar.__version__}"
    assert "command" not in container  # the image's ENTRYPOINT is `detour`
    assert container["args"] == [
        "inject",
        "--listen", "0.0.0.0:8443",
        "--tls-cert-file", "/etc/detour-inject/tls/tls.crt",
        "--tls-key-file", "/etc/detour-inject/tls/tls.key",
        "--sidecar-image", f"ghcr.io/detour-dev/detour:{sidecar.__version__}",
        "--config", "/etc/detour-inject/config/inject.yaml",
    ]  # fmt: skip


def test_the_injector_mounts_its_certificate_config_and_a_writable_tmp(objects: Objects) -> None:
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in injector_container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/detour-inject/tls"]]["secret"]["secretName"] == tls_secret_name(objects)
    config_map = volumes[mounts["/etc/detour-inject/config"]]["configMap"]["name"]
    assert "inject.yaml" in named(objects, "ConfigMap", config_map, NAMESPACE)["data"]
    assert volumes[mounts["/tmp"]] == {"name": "tmp", "emptyDir": {}}


def test_the_injector_is_hardened_like_the_sidecar(objects: Objects) -> None:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    container = injector_container(objects)
    assert container["securityContext"] == SECURITY_CONTEXT
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_injector_needs_no_api_access(objects: Objects) -> None:
    account = only(objects, "ServiceAccount")
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    assert not of_kind(objects, "ClusterRoleBinding")


def test_the_injector_is_probed_on_healthz_over_https_port_8443(objects: Objects) -> None:
    container = injector_container(objects)
    (port,) = container["ports"]
    assert port == {"name": "https", "containerPort": 8443, "protocol": "TCP"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}


def test_two_injectors_prefer_different_nodes_and_one_always_stays(default_objects: Objects) -> None:
    deployment = only(default_objects, "Deployment")
    template = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 2
    (term,) = template["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"], template["metadata"]["labels"])
    budget = only(default_objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"], template["metadata"]["labels"])
    assert deployment["spec"]["selector"]["matchLabels"] == budget["spec"]["selector"]["matchLabels"]


def test_a_single_injector_gets_no_disruption_budget_that_would_block_node_drains(helm: Helm) -> None:
    objects = helm.template(CHART, set_values={"injector.replicaCount": "1"})
    assert not of_kind(objects, "PodDisruptionBudget")


def test_the_service_sends_port_443_to_the_injector_pods_on_8443(objects: Objects) -> None:
    service = only(objects, "Service")
    template = only(objects, "Deployment")["spec"]["template"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    assert port["targetPort"] in ("https", 8443)
    assert selects({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])


def test_the_injector_pod_settings_come_from_the_values(all_objects: Objects) -> None:
    deployment = only(all_objects, "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    container = injector_container(all_objects)
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "registry.example.com/detour:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"][container["args"].index("--sidecar-image") + 1] == (
        "registry.example.com/detour-sidecar:0.1.0"
    )
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "96Mi", "ephemeral-storage": "8Mi"},
        "limits": {"cpu": "1", "memory": "192Mi"},
    }
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert [t["key"] for t in pod["tolerations"]] == ["dedicated", "node.kubernetes.io/unreachable"]
    assert set(pod["affinity"]) == {"nodeAffinity", "podAffinity", "podAntiAffinity"}
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert template["metadata"]["annotations"]["example.com/owner"] == "platform"
    assert template["metadata"]["labels"]["example.com/tier"] == "control-plane"
    assert only(all_objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_a_changed_inject_yaml_restarts_the_injector(helm: Helm, default_objects: Objects) -> None:
    before = only(default_objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    changed = helm.template(CHART, set_values={"injector.sidecar.logLevel": "debug"}, namespace=NAMESPACE)
    after = only(changed, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]


# --- the webhook ---------------------------------------------------------------------------------


def test_the_webhook_fails_open_and_has_no_side_effects(objects: Objects) -> None:
    service = only(objects, "Service")["metadata"]["name"]
    hooks = webhooks(objects)
    assert [hook["name"] for hook in hooks] == ["namespace.inject.detour.dev", "pod.inject.detour.dev"]
    for hook in hooks:
        assert hook["failurePolicy"] == "Ignore"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        assert hook["clientConfig"]["service"] == {
            "name": service,
            "namespace": NAMESPACE,
            "path": "/mutate",
            "port": 443,
        }


def test_the_api_server_waits_only_briefly_for_the_injector(
    default_objects: Objects, all_objects: Objects
) -> None:
    assert [hook["timeoutSeconds"] for hook in webhooks(default_objects)] == [5, 5]
    assert [hook["timeoutSeconds"] for hook in webhooks(all_objects)] == [3, 3]


INJECT = "detour.dev/inject"
SELECTION = [
    ("a pod of a labelled namespace", "shop", {INJECT: "true"}, {}, ["namespace"]),
    (
        "a labelled pod of a labelled namespace, once",
        "shop",
        {INJECT: "true"},
        {INJECT: "true"},
        ["namespace"],
    ),
    ("a pod opted out in a labelled namespace", "shop", {INJECT: "true"}, {INJECT: "false"}, []),
    ("a labelled pod of an unlabelled namespace", "shop", {}, {INJECT: "true"}, ["pod"]),
    ("an unlabelled pod of an unlabelled namespace", "shop", {}, {}, []),
    ("a pod opted out in an unlabelled namespace", "shop", {}, {INJECT: "false"}, []),
    ("a labelled pod of a namespace opted out", "shop", {INJECT: "false"}, {INJECT: "true"}, []),
    ("a pod of kube-system", "kube-system", {INJECT: "true"}, {INJECT: "true"}, []),
    ("a labelled pod of kube-system", "kube-system", {}, {INJECT: "true"}, []),
    ("a pod of the injector's own namespace", NAMESPACE, {INJECT: "true"}, {}, []),
]


@pytest.mark.parametrize(
    ("namespace", "namespace_labels", "pod_labels", "expected"),
    [case[1:] for case in SELECTION],
    ids=[case[0] for case in SELECTION],
)
def test_a_pod_is_sent_to_the_injector_by_its_namespace_or_its_own_label_never_both(
    default_objects: Objects,
    namespace: str,
    namespace_labels: dict[str, str],
    pod_labels: dict[str, str],
    expected: list[str],
) -> None:
    namespace_labels = {**namespace_labels, "kubernetes.io/metadata.name": namespace}
    called = [
        hook["name"].split(".")[0]
        for hook in webhooks(default_objects)
        if selects(hook["namespaceSelector"], namespace_labels)
        and selects(hook["objectSelector"], pod_labels)
    ]
    assert called == expected


def test_extra_namespaces_can_be_excluded_from_injection(all_objects: Objects) -> None:
    for hook in webhooks(all_objects):
        for namespace in ("monitoring", "kube-public", "kube-system", NAMESPACE):
            labels = {INJECT: "true", "kubernetes.io/metadata.name": namespace}
            assert not selects(hook["namespaceSelector"], labels), (hook["name"], namespace)


# --- TLS -----------------------------------------------------------------------------------------


def tls_secret_name(objects: Objects) -> str:
    certificates = [c for c in of_kind(objects, "Certificate") if not c["spec"].get("isCA")]
    if certificates:
        return certificates[0]["spec"]["secretName"]
    return only(objects, "Secret")["metadata"]["name"]


def test_without_cert_manager_the_ca_bundle_is_the_ca_that_signed_the_serving_certificate(
    default_objects: Objects,
) -> None:
    bundles = {hook["clientConfig"]["caBundle"] for hook in webhooks(default_objects)}
    assert len(bundles) == 1
    ca = x509.load_pem_x509_certificate(base64.b64decode(bundles.pop()))
    secret = only(default_objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == ca
    serving = x509.load_pem_x509_certificate(data["tls.crt"])
    key = serialization.load_pem_private_key(data["tls.key"], password=None)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    serving.verify_directly_issued_by(ca)
    assert key.public_key() == serving.public_key()
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "detour-injector.detour-system.svc" in names.get_values_for_type(x509.DNSName)
    usages = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    lifetime = serving.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=3640) < lifetime <= datetime.timedelta(days=3650)
    assert "annotations" not in only(default_objects, "MutatingWebhookConfiguration")["metadata"]


def test_with_cert_manager_the_ca_bundle_is_injected_from_the_serving_certificate(
    all_objects: Objects,
) -> None:
    configuration = only(all_objects, "MutatingWebhookConfiguration")
    for hook in configuration["webhooks"]:
        assert "caBundle" not in hook["clientConfig"]
    reference = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, name = reference.split("/")
    serving = named(all_objects, "Certificate", name, namespace)
    assert not of_kind(all_objects, "Secret")  # cert-manager writes it
    assert serving["spec"]["secretName"] == tls_secret_name(all_objects)
    assert "detour-all-injector.detour-system.svc" in serving["spec"]["dnsNames"]


def test_without_an_issuer_cert_manager_gets_a_self_signed_ca_chain(all_objects: Objects) -> None:
    issuers = {obj["metadata"]["name"]: obj["spec"] for obj in of_kind(all_objects, "Issuer")}
    certificates = {obj["metadata"]["name"]: obj["spec"] for obj in of_kind(all_objects, "Certificate")}
    serving = certificates["detour-all-injector-serving"]
    ca_issuer = issuers[serving["issuerRef"]["name"]]
    ca_certificate = next(spec for spec in certificates.values() if spec.get("isCA"))
    assert ca_issuer == {"ca": {"secretName": ca_certificate["secretName"]}}
    assert issuers[ca_certificate["issuerRef"]["name"]] == {"selfSigned": {}}
    assert serving["duration"] == "720h"
    assert serving["renewBefore"] == "240h"


def test_cert_manager_can_sign_with_an_existing_cluster_issuer(helm: Helm) -> None:
    objects = helm.template(
        CHART,
        set_values={
            "certManager.enabled": "true",
            "certManager.issuerRef.name": "corporate-ca",
            "certManager.issuerRef.kind": "ClusterIssuer",
        },
        namespace=NAMESPACE,
    )
    assert not of_kind(objects, "Issuer")
    certificate = only(objects, "Certificate")
    assert certificate["spec"]["issuerRef"] == {
        "name": "corporate-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    for obj in objects:
        assert_valid(obj)


# --- inject.yaml ---------------------------------------------------------------------------------


DEFAULT_INJECT_YAML = {
    "configmap": "detour-routes",
    "configmap_key": "routes.yaml",
    "sidecar_mode": "native",
    "image_pull_policy": "IfNotPresent",
    "port": 8081,
    "health_port": 8083,
    "grpc_port": 8082,
    "log_level": "info",
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    "telemetry": {"env": {}},
    "env": {},
}
ALL_OPTIONS_INJECT_YAML = {
    "configmap": "llm-routes",
    "configmap_key": "detour.yaml",
    "secret": "llm-keys",
    "sidecar_mode": "container",
    "image_pull_policy": "Always",
    "port": 9081,
    "health_port": 9083,
    "grpc_port": 9082,
    "log_level": "debug",
    "resources": {
        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "16Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    },
    "telemetry": {
        "otlp_endpoint": "http://otel-collector.observability.svc:4317",
        "otlp_protocol": "grpc",
        "env": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
    },
    "env": {"DETOUR_EXTRA": "1"},
}


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [("default_objects", DEFAULT_INJECT_YAML), ("all_objects", ALL_OPTIONS_INJECT_YAML)],
    ids=["default", "all-options"],
)
def test_inject_yaml_holds_the_sidecar_values_under_their_snake_case_names(
    request: pytest.FixtureRequest, fixture: str, expected: dict[str, Any]
) -> None:
    objects = request.getfixturevalue(fixture)
    config_maps = [c for c in of_kind(objects, "ConfigMap") if "inject.yaml" in c["data"]]
    (config_map,) = config_maps
    assert yaml.safe_load(config_map["data"]["inject.yaml"]) == expected
    parse_injector_settings(config_map["data"]["inject.yaml"])  # and `detour inject` accepts it


# --- RBAC for the sidecars -----------------------------------------------------------------------

SIDECAR_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def test_the_sidecar_cluster_role_reads_configmaps_and_creates_events(objects: Objects) -> None:
    assert only(objects, "ClusterRole")["rules"] == SIDECAR_RULES


def test_a_sidecar_whose_configmap_is_known_may_read_only_that_configmap(all_objects: Objects) -> None:
    role = named(all_objects, "Role", "detour-all-routes-llm-routes", "shop")
    assert role["rules"] == [
        {**SIDECAR_RULES[0], "resourceNames": ["llm-routes"]},
        SIDECAR_RULES[1],
    ]
    binding = named(all_objects, "RoleBinding", "detour-all-routes-llm-routes", "shop")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "detour-all-routes-llm-routes",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "default", "namespace": "shop"},
        {"kind": "ServiceAccount", "name": "checkout", "namespace": "shop"},
    ]


def test_a_sidecar_without_a_known_configmap_is_bound_to_the_cluster_role_in_its_namespace_only(
    all_objects: Objects,
) -> None:
    binding = named(all_objects, "RoleBinding", "detour-all-sidecar", "search")
    cluster_role = only(all_objects, "ClusterRole")["metadata"]["name"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role,
    }
    assert [s["name"] for s in binding["subjects"]] == ["search-api", "indexer"]
    assert {s["namespace"] for s in binding["subjects"]} == {"search"}
    assert len(of_kind(all_objects, "RoleBinding")) == 2
    assert len(of_kind(all_objects, "Role")) == 1
    assert not of_kind(all_objects, "ClusterRoleBinding")


def test_an_entry_without_a_configmap_needs_the_cluster_role(helm: Helm) -> None:
    with pytest.raises(HelmFailed, match=r"rbac\.createClusterRole"):
        helm.template(
            CHART,
            set_values={
                "rbac.createClusterRole": "false",
                "rbac.sidecarAccess[0].namespace": "shop",
                "rbac.sidecarAccess[0].serviceAccount": "default",
            },
        )


def test_without_the_injector_only_the_sidecar_rbac_and_routes_are_installed(helm: Helm) -> None:
    objects = helm.template(
        CHART,
        set_values={
            "injector.enabled": "false",
            "routes.enabled": "true",
            "routes.namespace": "shop",
            "rbac.sidecarAccess[0].namespace": "shop",
            "rbac.sidecarAccess[0].serviceAccount": "default",
            "rbac.sidecarAccess[0].configMap": "detour-routes",
        },
        namespace=NAMESPACE,
    )
    assert sorted(object_name(obj) for obj in objects) == [
        "ClusterRole /detour-sidecar",
        "ConfigMap shop/detour-routes",
        "Role shop/detour-routes-detour-routes",
        "RoleBinding shop/detour-routes-detour-routes",
    ]


def test_routes_without_a_namespace_are_refused_because_no_sidecar_could_read_them(helm: Helm) -> None:
    with pytest.raises(HelmFailed, match=r"routes\.namespace is required"):
        helm.template(CHART, set_values={"routes.enabled": "true"}, namespace=NAMESPACE)


def test_native_sidecars_are_refused_before_kubernetes_1_29_and_container_mode_is_not(helm: Helm) -> None:
    with pytest.raises(HelmFailed, match=r"needs Kubernetes 1\.29"):
        helm.template(CHART, namespace=NAMESPACE, extra_args=["--kube-version", "1.28.0"])
    objects = helm.template(
        CHART,
        set_values={"injector.sidecar.mode": "container"},
        namespace=NAMESPACE,
        extra_args=["--kube-version", "1.28.0"],
    )
    assert any(obj["kind"] == "MutatingWebhookConfiguration" for obj in objects)


def test_the_injector_keeps_answering_while_its_endpoint_is_removed(default_objects: Objects) -> None:
    pod = only(default_objects, "Deployment")["spec"]["template"]["spec"]
    assert injector_container(default_objects)["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    assert pod["terminationGracePeriodSeconds"] > 10


# --- routes --------------------------------------------------------------------------------------


def test_the_routes_configmap_holds_routes_that_load(all_objects: Objects) -> None:
    config_map = named(all_objects, "ConfigMap", "llm-routes", "shop")
    loaded = load_config_text(config_map["data"]["detour.yaml"], source="test", env=PROVIDER_ENV)
    assert set(loaded.config.providers) == {"openai-primary", "anthropic-alternative"}


def test_the_default_routes_in_values_load() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    loaded = load_config_text(values["routes"]["yaml"], source="values.yaml", env=PROVIDER_ENV)
    assert loaded.warnings == ()
    assert set(loaded.config.providers) == {"openai-primary", "anthropic-alternative"}


# --- the values schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"injector.sidecar.configmap": "x"}, "configmap"),  # a typo of configMap
        (
            {"rbac.sidecarAccess[0].namespace": "shop", "rbac.sidecarAccess[0].serviceAcount": "x"},
            "serviceAcount",
        ),
    ],
    ids=["at the top", "in injector.sidecar", "in an rbac.sidecarAccess entry"],
)
def test_the_schema_rejects_an_unknown_value(helm: Helm, setting: dict[str, str], complaint: str) -> None:
    with pytest.raises(HelmFailed, match=complaint) as failure:
        helm.template(CHART, set_values=setting)
    assert "schema" in failure.value.stderr


@pytest.mark.parametrize(
    "setting",
    [
        {"injector.replicaCount": "two"},
        {"injector.sidecar.port": "0"},
        {"injector.sidecar.logLevel": "verbose"},
        {"injector.sidecar.telemetry.otlpProtocol": "udp"},
        {"injector.sidecar.resources.limits.memory": "lots"},
        {"injector.webhook.timeoutSeconds": "60"},
        {"routes.name": "Not_A_Name"},
    ],
    ids=lambda setting: next(iter(setting)),
)
def test_the_schema_rejects_a_value_of_the_wrong_type_or_range(helm: Helm, setting: dict[str, str]) -> None:
    with pytest.raises(HelmFailed, match="schema"):
        helm.template(CHART, set_values=setting)


def test_the_sidecar_ports_must_differ(helm: Helm) -> None:
    with pytest.raises(HelmFailed, match="must differ"):
        helm.template(CHART, set_values={"injector.sidecar.healthPort": "8081"})


def inline_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The value paths the schema defines inline (shared definitions are types, not values)."""
    paths = set()
    for key, node in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        paths |= inline_paths(node, f"{path}.")
    return paths


def value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in node:
            paths |= value_paths(value, node, f"{path}.")
    return paths


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def schema_is_closed(node: dict[str, Any], where: str) -> None:
    if node.get("type") == "object" and "properties" in node:
        assert node.get("additionalProperties") is False, f"{where} admits unknown keys"
        for key, child in node["properties"].items():
            schema_is_closed(child, f"{where}.{key}")
    if "items" in node:
        schema_is_closed(node["items"], f"{where}[]")


def test_every_object_level_of_the_schema_refuses_unknown_keys(schema: dict[str, Any]) -> None:
    schema_is_closed(schema, "(root)")
    for name, definition in schema["definitions"].items():
        schema_is_closed(definition, f"definitions.{name}")


def test_the_schema_and_values_yaml_name_the_same_values(schema: dict[str, Any]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert value_paths(values, schema) == inline_paths(schema) - {"global"}


def test_values_all_sets_every_value(schema: dict[str, Any]) -> None:
    values = yaml.safe_load(VALUES_ALL.read_text())
    assert value_paths(values, schema) == inline_paths(schema) - {"global"}


def test_the_chart_readme_documents_every_value(schema: dict[str, Any]) -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, flags=re.MULTILINE))
    paths = inline_paths(schema) - {"global"}
    leaves = {path for path in paths if not any(other.startswith(f"{path}.") for other in paths)}
    assert sorted(leaves - documented) == []


# --- NOTES.txt -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart that renders NOTES.txt into a ConfigMap: `helm template` skips notes, and
    `helm install --dry-run` needs a cluster."""
    chart = tmp_path_factory.mktemp("notes") / "detour"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rendered-notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}}\n'
    )
    return chart


def rendered_notes(helm: Helm, chart: Path, values: list[Path]) -> str:
    objects = helm.template(chart, values=values, namespace=NAMESPACE)
    return next(o for o in objects if o["metadata"]["name"] == "rendered-notes")["data"]["notes"]


def test_the_notes_say_how_to_label_a_namespace_check_a_pod_and_where_routes_come_from(
    helm: Helm, notes_chart: Path
) -> None:
    notes = rendered_notes(helm, notes_chart, [])
    assert "kubectl label namespace NAMESPACE detour.dev/inject=true" in notes
    assert "-o jsonpath='{.spec.initContainers[*].name}'" in notes
    assert "the annotation detour.dev/injected" in notes
    assert r"-o jsonpath='{.metadata.annotations.detour\.dev/injected}'" in notes
    assert "kubectl create configmap detour-routes" in notes


def test_the_notes_render_with_every_option(helm: Helm, notes_chart: Path) -> None:
    notes = rendered_notes(helm, notes_chart, [VALUES_ALL])
    assert "-o jsonpath='{.spec.containers[*].name}'" in notes  # injector.sidecar.mode: container
    assert "shop/llm-routes" in notes
    assert "search/search-api -> all ConfigMaps (ClusterRole)" in notes
