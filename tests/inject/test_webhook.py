"""`detour inject` over HTTPS, as the API server calls it: AdmissionReviews for real pod specs, each
patch applied with jsonpatch and the result validated strictly as a Pod; malformed reviews allowed
unpatched; a renewed certificate picked up without a restart."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import jsonpatch
import pytest
import trustme

from tests.inject import pods
from tests.inject.running import Injector, injector, write_pair
from tests.support.kube_schema import assert_valid


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def running(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Injector]:
    directory = tmp_path_factory.mktemp("inject")
    cert_file, key_file = write_pair(ca, directory / "tls")
    config = directory / "inject.yaml"
    config.write_text("configmap: shop-routes\nsecret: llm-keys\n")
    with injector("--config", str(config), cert_file=cert_file, key_file=key_file) as process:
        yield process


def client_for(ca: trustme.CA) -> httpx.Client:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpx.Client(verify=context, timeout=5)


def mutate(running: Injector, ca: trustme.CA, body: bytes) -> dict[str, Any]:
    with client_for(ca) as client:
        response = client.post(
            f"{running.url}/mutate", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200
    document = response.json()
    assert (document["apiVersion"], document["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    return document["response"]


POD_SPECS = {
    "plain": pods.PLAIN,
    "several containers": pods.SEVERAL_CONTAINERS,
    "init containers": pods.WITH_INIT_CONTAINERS,
    "env already set": pods.ENV_ALREADY_SET,
    "already injected": pods.ALREADY_INJECTED,
    "opted out": pods.OPTED_OUT,
    "container mode": pods.CONTAINER_MODE,
    "deployment template without a name": pods.FROM_A_DEPLOYMENT,
}
INJECTED = {"plain", "several containers", "init containers", "env already set", "container mode",
            "deployment template without a name"}  # fmt: skip


@pytest.mark.parametrize("case", POD_SPECS)
def test_a_pod_review_round_trips_to_a_valid_pod(running: Injector, ca: trustme.CA, case: str) -> None:
    pod = POD_SPECS[case]
    response = mutate(running, ca, json.dumps(pods.review_of(pod, uid=f"uid-{case}")).encode())

    assert response["uid"] == f"uid-{case}"
    assert response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    patched = jsonpatch.apply_patch(pod, patch)
    assert_valid(patched)
    names = [c["name"] for c in patched["spec"].get("initContainers", []) + patched["spec"]["containers"]]
    if case in INJECTED:
        assert response["patchType"] == "JSONPatch"
        assert names.count("detour") == 1
        assert patched["metadata"]["annotations"]["detour.dev/injected"] == "0.1.0"
        sidecar = next(c for c in patched["spec"].get("initContainers", []) + patched["spec"]["containers"]
                       if c["name"] == "detour")  # fmt: skip
        assert "$(POD_NAMESPACE)/shop-routes" in sidecar["args"], "the injector's --config is honoured"
        assert sidecar["envFrom"] == [{"secretRef": {"name": "llm-keys"}}]
        assert sidecar["image"] == "registry.example/detour:0.1.0"
    else:
        assert patch == []
        assert patched == pod


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"kind": "AdmissionReview"}', json.dumps({"request": {"uid": "u1", "object": 3}}).encode()],
)
def test_a_malformed_review_is_allowed_unpatched(running: Injector, ca: trustme.CA, body: bytes) -> None:
    response = mutate(running, ca, body)

    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"][0].startswith("detour: pod not injected:")
    assert "allowed unpatched" in running.line_containing("review not understood")


def test_healthz_answers_and_unknown_paths_do_not(running: Injector, ca: trustme.CA) -> None:
    with client_for(ca) as client:
        assert client.get(f"{running.url}/healthz").json() == {"status": "ok"}
        assert client.get(f"{running.url}/mutate").status_code == 404
        assert client.post(f"{running.url}/validate", content=b"{}").status_code == 404


def test_plain_http_is_refused(running: Injector) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(running.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: pathlib.Path) -> None:
    """The kubelet updates a Secret volume by swapping the `..data` symlink; so do we."""
    old_ca, new_ca = trustme.CA(), trustme.CA()
    volume = tmp_path / "tls"
    volume.mkdir()
    write_pair(old_ca, volume / "..2026_01")
    (volume / "..data").symlink_to("..2026_01")
    for name in ("tls.crt", "tls.key"):
        (volume / name).symlink_to(f"..data/{name}")

    with injector(cert_file=volume / "tls.crt", key_file=volume / "tls.key") as process:
        with client_for(old_ca) as client:
            assert client.get(f"{process.url}/healthz").status_code == 200
        write_pair(new_ca, volume / "..2026_02")
        (volume / "..data_tmp").symlink_to("..2026_02")
        os.replace(volume / "..data_tmp", volume / "..data")
        process.line_containing("TLS certificate reloaded")

        with client_for(new_ca) as client:
            assert client.get(f"{process.url}/healthz").status_code == 200
        with (
            client_for(old_ca) as client,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.get(f"{process.url}/healthz")


def test_a_broken_certificate_update_keeps_the_previous_one(ca: trustme.CA, tmp_path: pathlib.Path) -> None:
    cert_file, key_file = write_pair(ca, tmp_path / "tls")
    with injector(cert_file=cert_file, key_file=key_file) as process:
        cert_file.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        process.line_containing("TLS files not reloaded")
        with client_for(ca) as client:
            assert client.get(f"{process.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("configmap: Shop_Routes\n", "configmap: 'Shop_Routes' is not a valid Kubernetes object name"),
        (
            "resources: {requests: {cpu: lots}}\n",
            "resources.requests.cpu: 'lots' is not a Kubernetes quantity",
        ),
        ("sidecar_mod: container\n", "unknown key 'sidecar_mod' (did you mean 'sidecar_mode'?)"),
        ("port: 8083\n", "port and health_port must differ"),
    ],
)
def test_a_bad_inject_yaml_stops_the_injector_at_start_with_the_problems_path(
    ca: trustme.CA, tmp_path: pathlib.Path, config: str, message: str
) -> None:
    cert_file, key_file = write_pair(ca, tmp_path / "tls")
    (tmp_path / "inject.yaml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", "inject", "--listen", "127.0.0.1:0",
         "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
         "--sidecar-image", "detour:test", "--config", str(tmp_path / "inject.yaml")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert message in result.stderr


def test_a_missing_certificate_stops_the_injector_at_start(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", "inject", "--listen", "127.0.0.1:0",
         "--tls-cert-file", str(tmp_path / "none.crt"), "--tls-key-file", str(tmp_path / "none.key"),
         "--sidecar-image", "detour:test"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert "cannot start" in result.stderr
