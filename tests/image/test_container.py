"""Detour's container image, built from the Dockerfile and run the way the sidecar runs in a pod:
read-only root filesystem, UID 65532, all capabilities dropped, only /tmp writable.

The first test builds the image (a few minutes from a cold machine, seconds with podman's caches),
hence the generous timeout; docs/image.md has the numbers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import ssl
import time
from typing import Any

import httpx
import pytest
import trustme

import sidecar
from sidecar.simulate import RateLimit, SimulatedProvider
from tests.image.container import IDLE_CONFIG, Container, serving, start, start_command, wait_until_ready
from tests.image.tools import podman
from tests.inject import pods
from tests.inject.running import write_pair
from tests.support.processes import free_port
from tests.support.running import pair_config

pytestmark = pytest.mark.timeout(480)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
AUTH = {"authorization": "Bearer sk-client"}

# Run inside the container (as its user): who PID 1 is, where it can write, what lacks bytecode.
PROBE = r"""
import importlib.util, json, os, pathlib, sysconfig

def attempt_write(directory):
    path = os.path.join(directory, ".detour-probe")
    try:
        with open(path, "w"):
            pass
    except OSError as exc:
        return exc.strerror
    os.remove(path)
    return "written"

status = dict(line.split(":", 1) for line in open("/proc/1/status").read().splitlines())
trees = [pathlib.Path("/opt/detour"), pathlib.Path(sysconfig.get_path("stdlib"))]
print(json.dumps({
    "pid1": open("/proc/1/cmdline").read().rstrip("\0").split("\0"),
    "uid": status["Uid"].split(),
    "gid": status["Gid"].split(),
    "writes": {d: attempt_write(d) for d in ("/", "/etc", "/opt/detour", "/var/tmp", "/tmp")},
    "without_bytecode": [
        str(source) for tree in trees for source in tree.rglob("*.py")
        if not os.path.exists(importlib.util.cache_from_source(str(source)))
    ],
    "pip": importlib.util.find_spec("pip") is not None,
}))
"""


@pytest.fixture
def idle_config(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_config(tmp_path, IDLE_CONFIG)


def write_config(directory: pathlib.Path, text: str) -> pathlib.Path:
    path = directory / "routes.yaml"
    path.write_text(text)
    path.chmod(0o644)  # read by UID 65532 through the bind mount
    return path


def test_the_image_runs_detour_serve_as_uid_65532_and_says_what_it_is(
    detour_image: str, podman_env: dict[str, str]
) -> None:
    config = json.loads(
        podman("image", "inspect", "--format", "{{json .Config}}", detour_image, env=podman_env)
    )
    env = dict(item.split("=", 1) for item in config["Env"])
    labels = config["Labels"]

    assert config["User"] == "65532:65532"
    assert (config["Entrypoint"], config["Cmd"]) == (["detour"], ["serve"])
    assert (env["PYTHONDONTWRITEBYTECODE"], env["PYTHONUNBUFFERED"]) == ("1", "1")
    assert labels["org.opencontainers.image.version"] == sidecar.__version__
    assert labels["org.opencontainers.image.title"] == "detour"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.revision"], "the build script passes the git commit"
    assert labels["org.opencontainers.image.created"], "and the build time"
    assert labels["org.opencontainers.image.base.name"].startswith("localhost/detour-test-base:")


def test_the_server_runs_as_uid_65532_on_a_read_only_root_with_only_tmp_writable(
    detour_image: str, podman_env: dict[str, str], idle_config: pathlib.Path
) -> None:
    with serving(detour_image, idle_config, podman_env) as container:
        health = httpx.get(container.url + "/healthz", timeout=5.0)
        facts = json.loads(container.exec("python", "-c", PROBE))

    assert health.status_code == 200
    assert facts["pid1"][1:3] == ["/opt/detour/bin/detour", "serve"], "PID 1 is the entry point itself"
    assert set(facts["uid"]) == {"65532"}, "real, effective, saved and filesystem UID"
    assert set(facts["gid"]) == {"65532"}
    assert facts["writes"] == {
        "/": "Read-only file system",
        "/etc": "Read-only file system",
        "/opt/detour": "Read-only file system",
        "/var/tmp": "Read-only file system",
        "/tmp": "written",
    }
    assert facts["without_bytecode"] == [], "compiled at build time: nothing to compile on a read-only root"
    assert facts["pip"] is False, "nothing installs anything at run time"


def test_the_container_stops_cleanly_and_promptly_on_sigterm(
    detour_image: str, podman_env: dict[str, str], idle_config: pathlib.Path
) -> None:
    with serving(detour_image, idle_config, podman_env) as container:
        started = time.monotonic()
        podman("stop", "--time", "20", container.name, env=podman_env, timeout=30)
        took = time.monotonic() - started
        exit_code = container.inspect("{{.State.ExitCode}}")

    assert exit_code == "0", "PID 1 handles SIGTERM: a graceful shutdown, not a kill"
    assert took < 10, f"stopping took {took:.1f} s"


async def test_container_fails_over_to_the_backup_when_the_primary_answers_429(
    detour_image: str, podman_env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
    ):
        primary.script(RateLimit(retry_after="30"))
        config = write_config(tmp_path, pair_config(primary, backup))
        container = await asyncio.to_thread(start, detour_image, config, podman_env)
        try:
            await asyncio.to_thread(wait_until_ready, container)
            response, state = await _chat_then_state(container)
        finally:
            await asyncio.to_thread(container.remove)

    assert response.status_code == 200, response.text
    assert response.headers["x-detour-provider"] == "backup"
    assert response.headers["x-detour-attempts"] == "2"
    assert response.json()["choices"][0]["message"]["content"]
    assert (len(primary.requests), len(backup.requests)) == (1, 1)
    assert [(item["provider"], item["wait_s"]) for item in state["rate_limited"]] == [("primary", 30.0)], (
        "the primary's 429 and its Retry-After reached the sidecar in the container"
    )


async def _chat_then_state(container: Container) -> tuple[httpx.Response, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=container.url, timeout=10.0) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        state = (await client.get("/admin/state")).json()
    return response, state


def test_the_image_runs_the_injector_over_https_with_mounted_certificates(
    detour_image: str, podman_env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    """The chart runs `detour inject` from the same image, as the same user, read-only."""
    ca = trustme.CA()
    cert_file, key_file = write_pair(ca, tmp_path / "tls")
    for path in (tmp_path / "tls", cert_file, key_file):
        path.chmod(0o755 if path.is_dir() else 0o644)  # read by UID 65532 through the bind mount
    port = free_port()
    tls = "/etc/detour-inject/tls"
    command = [
        "inject", "--listen", f"127.0.0.1:{port}",
        "--tls-cert-file", f"{tls}/tls.crt", "--tls-key-file", f"{tls}/tls.key",
        "--sidecar-image", "registry.example/detour:0.1.0",
    ]  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    container = start_command(detour_image, podman_env, url, {tmp_path / "tls": tls}, command)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        with httpx.Client(verify=context, timeout=5.0) as client:
            wait_for_https(client, container)
            answer = client.post(container.url + "/mutate", json=pods.review_of(pods.PLAIN)).json()
    finally:
        container.remove()

    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    added = next(op["value"] for op in patch if op["path"] == "/spec/initContainers")
    assert added[0]["name"] == "detour"
    assert added[0]["image"] == "registry.example/detour:0.1.0"


def wait_for_https(client: httpx.Client, container: Container, deadline_s: float = 30.0) -> None:
    """Probe /healthz as the kubelet does until it answers; fail with the container's logs."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if client.get(container.url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # the server is still starting: the kubelet would probe again too
    raise AssertionError(f"the injector never answered /healthz; logs:\n{container.logs()}")
