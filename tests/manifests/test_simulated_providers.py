"""manifests/simulated-providers, the kind walkthrough of docs/kubernetes.md: valid objects, routes
that load and name the simulators' Services, simulator args `detour simulate` accepts, and an app
pod that the injector turns into a valid pod with the sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from sidecar.cli.main import build_parser
from sidecar.config.loader import load_config_text
from sidecar.inject.patch import plan_injection
from sidecar.inject.settings import InjectorSettings
from tests.support.kube_schema import assert_valid, object_name

FOLDER = Path(__file__).parents[2] / "manifests" / "simulated-providers"
MANIFESTS = sorted(p.name for p in FOLDER.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for name in MANIFESTS:
        for obj in yaml.safe_load_all((FOLDER / name).read_text()):
            found[obj["kind"], obj["metadata"]["name"]] = obj
    return found


def test_every_object_is_valid_and_the_kustomization_applies_them_all(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for obj in objects.values():
        assert_valid(obj)
        assert obj["metadata"].get("namespace", "shop") == "shop", object_name(obj)
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == MANIFESTS
    assert objects["Namespace", "shop"]["metadata"]["labels"] == {"detour.dev/inject": "true"}


def test_the_routes_load_and_point_at_the_simulators_services(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    secret = objects["Secret", "llm-keys"]["stringData"]
    routes = objects["ConfigMap", "detour-routes"]["data"]["routes.yaml"]
    loaded = load_config_text(routes, source="test", env=secret)

    assert loaded.warnings == ()
    for provider in loaded.config.providers.values():
        host, port = provider.base_url.removeprefix("http://").split("/")[0].split(":")
        service, namespace = host.split(".")[:2]
        assert namespace == "shop"
        assert objects["Service", service]["spec"]["ports"][0]["port"] == int(port)


def test_the_simulators_run_detour_simulate_and_opt_out_of_injection(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    simulators = [obj for (kind, name), obj in objects.items() if kind == "Deployment" and name != "shop"]
    assert len(simulators) == 2
    for deployment in simulators:
        template = deployment["spec"]["template"]
        args = build_parser().parse_args(template["spec"]["containers"][0]["args"])
        assert args.command == "simulate"
        assert args.listen == ("0.0.0.0", 9000)
        assert template["metadata"]["labels"]["detour.dev/inject"] == "false"


def test_the_app_pod_injected_as_the_walkthrough_installs_it_is_a_valid_pod(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    template = objects["Deployment", "shop"]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "namespace": "shop",
           "generateName": "shop-"}, "spec": template["spec"]}  # fmt: skip
    injection = plan_injection(pod, InjectorSettings(secret="llm-keys"), image="detour:dev", version="0.1.0")
    patched = jsonpatch.apply_patch(pod, injection.patch)

    assert_valid(patched)
    sidecar = patched["spec"]["initContainers"][0]
    assert sidecar["envFrom"] == [{"secretRef": {"name": "llm-keys"}}]
    assert "$(POD_NAMESPACE)/detour-routes" in sidecar["args"]
    assert ("ServiceAccount", patched["spec"]["serviceAccountName"]) in objects
