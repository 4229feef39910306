"""`detour serve` as users run it, with each config source: a file that changes under it, and a
ConfigMap watched through a wire-faithful API server. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import sys
from collections.abc import AsyncIterator

import httpx

from sidecar.simulate import SimulatedProvider
from tests.support.fake_kube import FakeKubeAPI
from tests.support.processes import LoggedProcess, free_port
from tests.support.running import config_text, limits_alternative_rule, provider

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"authorization": "Bearer sk"}


def routes(*sims: SimulatedProvider, typo: bool = False) -> str:
    providers = {f"p{i}": provider("openai", sim.base_url) for i, sim in enumerate(sims)}
    primaries = [f"{name}-typo" if typo else name for name in providers]
    return config_text(providers, [limits_alternative_rule(primaries)])


class Detour(LoggedProcess):
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        super().__init__(process)
        self.url = f"http://127.0.0.1:{port}"

    async def served_by(self) -> str:
        async with httpx.AsyncClient(base_url=self.url, headers=AUTH) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text
        return response.headers["x-detour-provider"]


def swap(config: pathlib.Path, text: str) -> None:
    """Replace the file whole, as a ConfigMap update or an editor's save does: a reload that polls
    in the middle of a plain write may read it half written, which is rejected too (rightly), and
    would count as a second rejection."""
    staged = config.with_name(config.name + ".new")
    staged.write_text(text)
    os.replace(staged, config)


@contextlib.asynccontextmanager
async def detour(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Detour]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar.cli.main",
        "serve",
        "--port",
        str(port),
        *args,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    running = Detour(process, port)
    try:
        await running.line_containing("detour serving on")
        yield running
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def test_serve_reloads_a_changed_file_and_rejects_a_broken_one(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "routes.yaml"
    async with SimulatedProvider("openai") as first, SimulatedProvider("openai") as second:
        config.write_text(routes(first))
        async with detour("--config", str(config), "--reload-interval", "0.05") as running:
            assert await running.served_by() == "p0"
            swap(config, routes(second, first))
            await running.line_containing("applied from file:")
            assert await running.served_by() == "p0"
            swap(config, routes(second, typo=True))
            await running.line_containing("rejected; the last good config stays active")
            assert await running.served_by() == "p0"
            async with httpx.AsyncClient(base_url=running.url) as client:
                state = (await client.get("/admin/state")).json()

    assert len(first.requests) == 1
    assert len(second.requests) == 2, "the reloaded route served, and kept serving after the bad edit"
    assert state["reload"]["source"] == f"file:{config}"
    assert state["reload"]["last_result"] == "rejected"
    assert "unknown provider 'p0-typo'" in state["reload"]["last_problems"][0]
    assert state["config"]["version"] == state["reload"]["version"]


async def test_serve_rejects_a_value_its_yaml_tag_cannot_convert_and_applies_the_next_file(
    tmp_path: pathlib.Path,
) -> None:
    config = tmp_path / "routes.yaml"
    async with SimulatedProvider("openai") as first, SimulatedProvider("openai") as second:
        config.write_text(routes(first))
        async with detour("--config", str(config), "--reload-interval", "0.05") as running:
            assert await running.served_by() == "p0"
            swap(
                config,
                routes(second).replace("type: openai\n", "type: openai\n    api_key: !!int sk-secret123\n"),
            )
            rejected = await running.line_containing("rejected; the last good config stays active")
            problem = await running.line_containing("providers.p0.api_key")
            assert await running.served_by() == "p0"
            swap(config, routes(second))
            await running.line_containing("applied from file:")
            assert await running.served_by() == "p0"
            async with httpx.AsyncClient(base_url=running.url) as client:
                state = (await client.get("/admin/state")).json()

    assert "is not a valid !!int" in problem
    assert f"file:{config}" in rejected
    assert "sk-secret123" not in "".join(running.log)
    assert (len(first.requests), len(second.requests)) == (2, 1), "the file after the bad one is applied"
    assert state["reload"]["last_result"] == "applied"
    assert (state["reload"]["applied"], state["reload"]["rejected"], state["reload"]["failed"]) == (2, 1, 0)


async def test_serve_follows_a_configmap_and_reports_to_it(tmp_path: pathlib.Path) -> None:
    async with (
        FakeKubeAPI() as api,
        SimulatedProvider("openai") as first,
        SimulatedProvider("openai") as second,
    ):
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        async with detour("--configmap", "apps/routes", "--kubeconfig", kubeconfig) as running:
            async with httpx.AsyncClient(base_url=running.url) as client:
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/readyz")).status_code == 503, "not ready before a config exists"
            api.apply_configmap("apps", "routes", {"routes.yaml": routes(first)})
            await api.wait_for_event("ConfigApplied")
            assert await running.served_by() == "p0"
            api.apply_configmap("apps", "routes", {"routes.yaml": routes(second)})
            await api.wait_for_event("ConfigApplied")
            assert await running.served_by() == "p0"
            api.apply_configmap("apps", "routes", {"routes.yaml": routes(second, typo=True)})
            warning = await api.wait_for_event("InvalidRoutingConfig")
            assert await running.served_by() == "p0"
            async with httpx.AsyncClient(base_url=running.url) as client:
                ready = await client.get("/readyz")
                state = (await client.get("/admin/state")).json()

    assert ready.status_code == 200
    assert (len(first.requests), len(second.requests)) == (1, 2)
    assert warning["involvedObject"]["name"] == "routes"
    assert state["reload"]["source"] == "configmap:apps/routes"
    assert state["config"]["source"].startswith("configmap:apps/routes@")


async def test_serve_caps_request_heads_at_max_header_bytes(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "routes.yaml"
    async with SimulatedProvider("openai") as upstream:
        config.write_text(routes(upstream))
        async with detour("--config", str(config), "--max-header-bytes", "4096") as running:
            async with httpx.AsyncClient(base_url=running.url) as client:
                small = await client.get("/healthz", headers={"x-pad": "a" * 3000})
                large = await client.get("/healthz", headers={"x-pad": "a" * 5000})
            assert await running.served_by() == "p0"
            logged = await running.line_containing("request head over 4096 bytes")

    assert small.status_code == 200
    assert large.status_code == 431
    assert large.headers["connection"] == "close"
    assert "answered 431" in logged


async def test_serve_refuses_two_config_sources() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar.cli.main",
        "serve",
        "--config",
        "a.yaml",
        "--configmap",
        "ns/cm",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"exactly one of" in stderr


async def test_serve_answers_probes_on_the_health_port_and_nothing_else(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "routes.yaml"
    health_port = free_port()
    async with SimulatedProvider("openai") as upstream:
        config.write_text(routes(upstream))
        async with detour("--config", str(config), "--health-port", str(health_port)) as running:
            bound = await running.line_containing("health probes on")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}") as probes:
                healthz = await probes.get("/healthz")
                readyz = await probes.get("/readyz")
                chat = await probes.post("/v1/chat/completions", json=CHAT, headers=AUTH)
                admin = await probes.get("/admin/state")
            assert await running.served_by() == "p0", "the API still serves on its own port"
            running.process.terminate()
            assert await asyncio.wait_for(running.process.wait(), 10) == 0, "SIGTERM drains both servers"

    assert f"0.0.0.0:{health_port}" in bound, "the kubelet reaches the pod IP, so every interface"
    assert healthz.status_code == 200
    assert readyz.status_code == 200
    assert readyz.json()["status"] == "ready"
    assert chat.status_code == 404, "the probe port must not spend the pod's provider keys"
    assert admin.status_code == 404
    assert len(upstream.requests) == 1
