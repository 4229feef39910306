"""manifests/quickstart: every object valid for Kubernetes, the routes load, the hand-written sidecar
is the contract's container, and the pieces refer to each other by the right names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config.loader import load_config_text
from sidecar.errors import ConfigError
from sidecar.inject.patch import sidecar_volumes
from tests.charts.contract import SECURITY_CONTEXT, base_url_env, default_container
from tests.support.kube_schema import assert_valid, object_name

QUICKSTART = Path(__file__).parents[2] / "manifests" / "quickstart"
NAMESPACE = "detour-quickstart"
PROVIDER_ENV = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}
MANIFESTS = sorted(p.name for p in QUICKSTART.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((QUICKSTART / name).read_text()) if doc]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for name in MANIFESTS:
        for obj in documents(name):
            found[obj["kind"], obj["metadata"]["name"]] = obj
    return found


@pytest.fixture(scope="module")
def pod(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return objects["Deployment", "quickstart-app"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_quickstart_document_is_a_valid_kubernetes_object(name: str) -> None:
    docs = documents(name)
    assert docs
    for obj in docs:
        assert_valid(obj)


def test_the_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((QUICKSTART / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(set(MANIFESTS) - {"secret.example.yaml"})


def test_everything_lives_in_the_quickstart_namespace(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert ("Namespace", NAMESPACE) in objects
    for (kind, _), obj in objects.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, object_name(obj)


def routes_text(objects: dict[tuple[str, str], dict[str, Any]]) -> str:
    return objects["ConfigMap", "detour-routes"]["data"]["routes.yaml"]


def test_the_routes_configmap_loads_as_a_detour_config(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    loaded = load_config_text(routes_text(objects), source="quickstart", env=PROVIDER_ENV)
    assert loaded.warnings == ()
    assert set(loaded.config.providers) == {"openai-primary", "anthropic-primary"}
    assert loaded.config.providers["openai-primary"].type == "openai"
    assert loaded.config.providers["anthropic-primary"].type == "anthropic"


def test_the_routes_take_their_keys_from_the_environment(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config_text(routes_text(objects), source="quickstart", env={})
    for name in PROVIDER_ENV:
        assert name in str(missing.value)


def test_the_secret_example_holds_placeholders_for_the_keys_the_routes_use(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    secret = objects["Secret", "detour-provider-keys"]
    assert set(secret["stringData"]) == set(PROVIDER_ENV)
    assert all("REPLACE" in value for value in secret["stringData"].values())


def test_the_hand_written_sidecar_is_the_contract_container(pod: dict[str, Any]) -> None:
    expected = default_container("ghcr.io/detour-dev/detour:0.1.0")
    expected["envFrom"] = [{"secretRef": {"name": "detour-provider-keys"}}]
    assert pod["initContainers"] == [expected]
    assert pod["initContainers"][0]["securityContext"] == SECURITY_CONTEXT
    for volume in sidecar_volumes():
        assert volume in pod["volumes"]


def test_the_app_sends_its_sdk_requests_to_the_sidecar(pod: dict[str, Any]) -> None:
    (app,) = pod["containers"]
    assert app["env"] == base_url_env(8081)


def test_the_pod_is_left_alone_by_an_installed_injector(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    labels = objects["Deployment", "quickstart-app"]["spec"]["template"]["metadata"]["labels"]
    assert labels["detour.dev/inject"] == "false"


def test_the_pods_service_account_may_read_exactly_the_watched_configmap(
    objects: dict[tuple[str, str], dict[str, Any]], pod: dict[str, Any]
) -> None:
    account = objects["ServiceAccount", pod["serviceAccountName"]]
    assert account.get("automountServiceAccountToken", True) is not False
    assert pod.get("automountServiceAccountToken", True) is not False

    args = pod["initContainers"][0]["args"]
    watched = args[args.index("--configmap") + 1].removeprefix("$(POD_NAMESPACE)/")
    assert ("ConfigMap", watched) in objects
    assert args[args.index("--configmap-key") + 1] in objects["ConfigMap", watched]["data"]

    binding = objects["RoleBinding", "detour-routes-reader"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]
    role = objects[binding["roleRef"]["kind"], binding["roleRef"]["name"]]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [watched],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
