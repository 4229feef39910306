"""Routes from a ConfigMap, end to end: the official `kubernetes` client against a test API server
that speaks the real wire protocol, driving the real sidecar and its watcher (docs/architecture.md §5); and,
at the end, how the watch loop starts over after `ConfigMapGone` or `WatchFailed`, with scripted watches."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from sidecar.app import Sidecar
from sidecar.errors import ConfigMapGone, DetourError, KubeError, WatchFailed
from sidecar.kube.client import core_v1_api
from sidecar.kube.configmap import ConfigMapRef, ConfigMapWatcher
from sidecar.kube.follow import configmap_reporter, follow_configmap
from sidecar.kube.reload import ConfigReloader
from sidecar.simulate import SimulatedProvider, SlowStream
from tests.support.fake_kube import FakeKubeAPI
from tests.support.running import config_text, limits_alternative_rule, provider, serve_sidecar

NAMESPACE, NAME = "apps", "detour-routes"
AUTH = {"authorization": "Bearer sk"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def routes(*sims: SimulatedProvider) -> str:
    providers = {f"p{i}": provider("openai", sim.base_url) for i, sim in enumerate(sims)}
    return config_text(providers, [limits_alternative_rule(list(providers))])


@dataclass
class Watching:
    api: FakeKubeAPI
    sidecar: Sidecar
    reloader: ConfigReloader
    url: str

    async def served_by(self) -> str:
        async with httpx.AsyncClient(base_url=self.url, headers=AUTH) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text
        return response.headers["x-detour-provider"]

    async def applied(self, count: int) -> None:
        await self.reloader.wait_for(lambda status: status.applied >= count)


@contextlib.asynccontextmanager
async def watching(tmp_path: pathlib.Path, api: FakeKubeAPI) -> AsyncIterator[Watching]:
    ref = ConfigMapRef(NAMESPACE, NAME)
    core_api = core_v1_api(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
    sidecar = Sidecar()
    reloader = ConfigReloader(
        sidecar.apply, source=f"configmap:{ref}", env={}, report=configmap_reporter(ref, core_api)
    )
    follower = asyncio.create_task(follow_configmap(ref, reloader, core_api, watch_timeout_s=2))
    try:
        async with serve_sidecar(sidecar) as url:
            yield Watching(api, sidecar, reloader, url)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


@pytest.fixture
async def api() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        server.bookmark_interval_s = 0.2
        yield server


async def test_a_configmap_is_applied_then_updates_serve_within_a_second(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with SimulatedProvider("openai") as first, SimulatedProvider("openai") as second:
        created = api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(first)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            assert await w.served_by() == "p0"
            applied = await api.wait_for_event("ConfigApplied")
            first_version = w.reloader.status.version
            await api.wait_for_watchers(1)

            started = time.perf_counter()
            api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(second, first)})
            await w.applied(2)
            assert await w.served_by() == "p0"
            elapsed = time.perf_counter() - started

    assert len(second.requests) == 1, "the new route is serving"
    print(f"ConfigMap update to the new route serving: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"ConfigMap update to new route serving took {elapsed:.3f} s"
    involved = applied["involvedObject"]
    assert (involved["kind"], involved["name"], involved["namespace"]) == ("ConfigMap", NAME, NAMESPACE)
    assert involved["uid"] == created["metadata"]["uid"]
    assert applied["type"] == "Normal"
    assert first_version is not None
    assert first_version in applied["message"]
    watch_requests = [path for method, path in api.requests if "watch=true" in path]
    assert watch_requests
    assert all(
        f"fieldSelector=metadata.name={NAME}" in path for method, path in api.requests if "configmaps" in path
    )


async def test_an_invalid_update_is_rejected_with_a_warning_event_and_the_old_routes_keep_serving(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with SimulatedProvider("openai") as sim:
        api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(sim)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            broken = routes(sim).replace("- p0", "- p0-typo", 1)
            api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": broken})
            warning = await api.wait_for_event("InvalidRoutingConfig")
            assert await w.served_by() == "p0"
            async with httpx.AsyncClient(base_url=w.url) as client:
                ready = await client.get("/readyz")

    assert warning["type"] == "Warning"
    assert "unknown provider 'p0-typo'" in warning["message"]
    assert ready.status_code == 200
    assert w.reloader.status.last_result == "rejected"


async def test_a_deleted_configmap_keeps_the_last_good_routes_and_is_reported(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with SimulatedProvider("openai") as sim:
        api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(sim)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            api.delete_configmap(NAMESPACE, NAME)
            warning = await api.wait_for_event("InvalidRoutingConfig")
            assert await w.served_by() == "p0"

    assert "deleted" in warning["message"]
    assert "keeping version" in warning["message"]


async def test_after_a_410_gone_the_watcher_relists_and_picks_up_the_change(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with SimulatedProvider("openai") as first, SimulatedProvider("openai") as second:
        api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(first)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            await api.wait_for_watchers(1)
            api.drop_watches()
            api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(second)})
            api.compact()  # the version the watcher resumes from is gone now
            await w.applied(2)
            assert await w.served_by() == "p0"

    assert len(second.requests) == 1
    lists = [path for method, path in api.requests if "configmaps" in path and "watch=true" not in path]
    assert len(lists) >= 2, "a relist after the 410"


async def test_the_watcher_reconnects_after_the_api_server_restarts(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with SimulatedProvider("openai") as first, SimulatedProvider("openai") as second:
        api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(first)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            await api.stop()
            assert await w.served_by() == "p0", "the last good config keeps serving while the API is down"
            async with httpx.AsyncClient(base_url=w.url) as client:
                assert (await client.get("/readyz")).status_code == 200
            await api.start()
            api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(second)})
            await w.reloader.wait_for(lambda status: status.applied >= 2, within_s=10)
            assert await w.served_by() == "p0"

    assert len(second.requests) == 1


async def test_a_reload_during_a_stream_lets_the_stream_finish_on_its_snapshot(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with (
        SimulatedProvider("openai", reply_text="one two three four five six") as old,
        SimulatedProvider("openai") as new,
    ):
        old.script(SlowStream(between_events_s=0.05))
        api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(old)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            async with httpx.AsyncClient(base_url=w.url, headers=AUTH) as client:
                async with client.stream(
                    "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
                ) as stream:
                    body = b""
                    async for chunk in stream.aiter_bytes():
                        if not body:
                            api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(new)})
                            await w.applied(2)
                        body += chunk
                after = await w.served_by()

    assert stream.headers["x-detour-provider"] == "p0"
    assert body.rstrip().endswith(b"data: [DONE]"), "the stream finished on the snapshot it started with"
    assert b"six" in body
    assert after == "p0"
    assert len(new.requests) == 1


async def test_the_watcher_reconnects_after_a_dropped_connection(
    tmp_path: pathlib.Path, api: FakeKubeAPI
) -> None:
    async with SimulatedProvider("openai") as first, SimulatedProvider("openai") as second:
        api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(first)})
        async with watching(tmp_path, api) as w:
            await w.applied(1)
            await api.wait_for_watchers(1)
            watches_before = sum("watch=true" in path for _, path in api.requests)
            api.drop_watches()
            await api.wait_for_watchers(1)
            api.apply_configmap(NAMESPACE, NAME, {"routes.yaml": routes(second)})
            await w.applied(2)
            assert await w.served_by() == "p0"

    assert len(second.requests) == 1
    assert sum("watch=true" in path for _, path in api.requests) > watches_before


# --- how the watcher starts over, without an API server ------------------------------------------


class ScriptedWatcher(ConfigMapWatcher):
    """The list → watch loop with scripted lists and watches: each watch raises what the script says,
    and the loop stops once the script is done."""

    def __init__(self, watch_outcomes: list[BaseException | None]) -> None:
        super().__init__(ConfigMapRef(NAMESPACE, NAME), core_api=None, deliver=lambda state: None)
        self.outcomes = watch_outcomes
        self.calls: list[str] = []
        self.pauses: list[BaseException] = []

    def _list(self) -> str:
        self.calls.append("list")
        return "7"

    def _watch(self, resource_version: str) -> str:
        self.calls.append(f"watch@{resource_version}")
        outcome = self.outcomes.pop(0)
        if not self.outcomes:
            self.stop()
        if outcome is not None:
            raise outcome
        return "8"

    def _pause(self, exc: BaseException) -> None:
        self.pauses.append(exc)


def test_an_error_event_with_410_is_configmap_gone_and_any_other_is_a_failed_watch() -> None:
    watcher = ScriptedWatcher([])
    with pytest.raises(ConfigMapGone):
        watcher._handle({"type": "ERROR", "object": {"code": 410, "message": "too old"}}, "7")
    with pytest.raises(WatchFailed, match="etcd is unhappy"):
        watcher._handle({"type": "ERROR", "object": {"code": 500, "message": "etcd is unhappy"}}, "7")
    assert issubclass(ConfigMapGone, KubeError)
    assert issubclass(WatchFailed, KubeError)
    assert issubclass(KubeError, DetourError)


def test_after_configmap_gone_the_watcher_relists_at_once() -> None:
    watcher = ScriptedWatcher([ConfigMapGone(), None])
    watcher.run()

    assert watcher.calls == ["list", "watch@7", "list", "watch@7"]
    assert watcher.pauses == []


def test_after_a_failed_watch_the_watcher_backs_off_and_resumes_from_the_same_version() -> None:
    failure = WatchFailed("etcd is unhappy")
    watcher = ScriptedWatcher([None, failure, None])
    watcher.run()

    assert watcher.calls == ["list", "watch@7", "watch@8", "watch@8"]
    assert watcher.pauses == [failure]
