"""The pod the injector produces, run as the kubelet would run it (short of a cluster): the sidecar
container's own args and env, `$(VAR)` expanded from its env, against a wire-faithful API server
holding the routes ConfigMap; the kubelet's probes on the health port; the app's injected
`OPENAI_BASE_URL` used by the official SDK; and `detour simulate` processes as the providers.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import httpx
import jsonpatch
import openai

from sidecar.inject.patch import plan_injection
from sidecar.inject.settings import InjectorSettings
from tests.inject import pods
from tests.support.fake_kube import FakeKubeAPI
from tests.support.processes import detour_process, free_port
from tests.support.running import config_text, limits_alternative_rule, provider


def kubelet_env(container: dict[str, Any], pod: dict[str, Any], secret: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env (fieldRefs resolved)."""
    fields = {"metadata.namespace": pod["metadata"]["namespace"], "metadata.name": "shop-7d4b9c6f5-x2x9q",
              "metadata.uid": "4f1c", "spec.nodeName": "node-1"}  # fmt: skip
    env = dict(secret) if container.get("envFrom") else {}
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("fieldRef")
        env[entry["name"]] = fields[ref["fieldPath"]] if ref else entry["value"]
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


async def test_an_injected_pod_serves_the_app_and_fails_over(tmp_path: pathlib.Path) -> None:
    api_port, health_port = free_port(), free_port()
    settings = InjectorSettings(port=api_port, health_port=health_port, secret="llm-keys")
    injection = plan_injection(pods.FROM_A_DEPLOYMENT, settings, image="detour:test", version="0.1.0")
    pod = jsonpatch.apply_patch(pods.FROM_A_DEPLOYMENT, injection.patch)
    sidecar = pod["spec"]["initContainers"][0]
    app_env = kubelet_env(pod["spec"]["containers"][0], pod, {})
    sidecar_env = kubelet_env(sidecar, pod, {"OPENAI_API_KEY": "sk-pod-key"})
    primary_port, backup_port = free_port(), free_port()

    async with (
        FakeKubeAPI() as api,
        detour_process("simulate", "--listen", f"127.0.0.1:{primary_port}", "--name", "primary",
                       "--limit", "1", "--window", "60", "--api-key", "sk-pod-key") as primary,
        detour_process("simulate", "--listen", f"127.0.0.1:{backup_port}", "--name", "backup",
                       "--api-key", "sk-pod-key") as backup,
    ):  # fmt: skip
        await primary.line_containing("serving on")
        await backup.line_containing("serving on")
        routes = config_text(
            {
                "primary": provider(
                    "openai", f"http://127.0.0.1:{primary_port}/v1", api_key="$OPENAI_API_KEY"
                ),
                "backup": provider("openai", f"http://127.0.0.1:{backup_port}/v1", api_key="$OPENAI_API_KEY"),
            },
            [limits_alternative_rule(["primary"], ["backup"])],
        )
        api.apply_configmap("apps", "detour-routes", {"routes.yaml": routes})
        args = [expand(arg, sidecar_env) for arg in sidecar["args"]]
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        async with detour_process(*args, "--kubeconfig", kubeconfig, env=sidecar_env) as running:
            await running.line_containing("detour serving on")
            await api.wait_for_event("ConfigApplied")
            probe = sidecar["readinessProbe"]["httpGet"]
            async with httpx.AsyncClient() as kubelet:
                ready = await kubelet.get(f"http://127.0.0.1:{probe['port']}{probe['path']}")
            client = openai.AsyncOpenAI(base_url=app_env["OPENAI_BASE_URL"], api_key="unused-by-the-app")
            first = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            second = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi again"}]
            )
            await client.close()

    assert args[:3] == ["serve", "--configmap", "apps/detour-routes"], (
        "$(POD_NAMESPACE) came from the downward API"
    )
    assert ready.status_code == 200
    assert first.headers["x-detour-provider"] == "primary"
    assert first.parse().choices[0].message.content == "Hello from primary."
    assert second.headers["x-detour-provider"] == "backup", (
        "the primary's 429 failed over in the same request"
    )
    assert second.headers["x-detour-attempts"] == "2"
    assert second.parse().choices[0].message.content == "Hello from backup."
