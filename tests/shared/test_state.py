"""The shared state's shell in one process (sidecar/shared/state.py): sidecars served in the test's
event loop on a real Redis — telemetry of peer limits, a hung Redis that never slows a request, a
secret URL never shown, a bounded queue, and a reload that turns the sharing off."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.events import RateLimited
from sidecar.routing.limits import LimitReason
from sidecar.shared import state as shared_state
from sidecar.simulate.behaviours import RateLimit
from sidecar.simulate.server import SimulatedProvider
from sidecar.telemetry import TelemetrySettings
from sidecar.telemetry.runtime import start_telemetry
from tests.shared.redis_server import RedisServer, redis_server
from tests.shared.support import CHAT, FakeLink
from tests.support.running import limits_alternative_rule, provider, serve_sidecar

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sims() -> AsyncIterator[tuple[SimulatedProvider, SimulatedProvider]]:
    async with SimulatedProvider("openai", name="primary") as primary, SimulatedProvider("openai") as backup:
        yield primary, backup


def routes(sims: tuple[SimulatedProvider, SimulatedProvider], state: dict[str, Any] | None) -> str:
    primary, backup = sims
    document: dict[str, Any] = {
        "providers": {
            "primary": provider("openai", primary.base_url, api_key="sk-p"),
            "backup": provider("openai", backup.base_url, api_key="sk-b"),
        },
        "routing": {"rules": [limits_alternative_rule(["primary"], ["backup"])]},
    }
    if state is not None:
        document["state"] = state
    return yaml.safe_dump(document)


async def connected(sidecar: Sidecar, *, within_s: float = 5) -> None:
    """Poll (the link has no event a test can await in-process) until the sidecar is connected."""
    deadline = time.monotonic() + within_s
    while not sidecar.shared.connected:
        assert time.monotonic() < deadline, sidecar.shared.describe()
        await asyncio.sleep(0.01)


async def chat(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{url}/v1/chat/completions", json=CHAT)


async def test_a_peers_limit_is_counted_with_source_peer_and_the_link_is_a_metric(
    redis: RedisServer, sims: tuple[SimulatedProvider, SimulatedProvider]
) -> None:
    text = routes(sims, {"backend": "redis", "url": redis.url})
    reader = InMemoryMetricReader()
    telemetry = start_telemetry(TelemetrySettings(), metric_readers=[reader])
    assert telemetry is not None
    first = Sidecar(load_config_text(text, source="test", env={}))
    second = Sidecar(load_config_text(text, source="test", env={}), telemetry=telemetry)
    try:
        async with serve_sidecar(first) as url, serve_sidecar(second):
            await connected(first)
            await connected(second)
            sims[0].script(RateLimit(retry_after="30"))
            assert (await chat(url)).headers["x-detour-provider"] == "backup"
            deadline = time.monotonic() + 1.0
            while not second.shared.counters["peer_limits"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            points = metric_points(reader)
            assert ("detour.rate_limit.events", {"provider": "primary", "model": "gpt-4o",
                    "reason": "rate_limit", "source": "peer"}, 1) in points  # fmt: skip
            assert ("detour.shared_state.connected", {"backend": "redis"}, 1) in points
            assert ("detour.shared_state.errors", {"backend": "redis"}, 0) in points
            assert not any(name == "detour.rate_limit.backoff" for name, _, _ in points), "not its wait"
    finally:
        await asyncio.to_thread(telemetry.shutdown)


def metric_points(reader: InMemoryMetricReader) -> list[tuple[str, dict[str, Any], float]]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        (metric.name, dict(point.attributes or {}), point.value)  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]


async def test_a_hung_redis_never_slows_a_request_and_is_counted_until_it_answers_again(
    redis: RedisServer, sims: tuple[SimulatedProvider, SimulatedProvider]
) -> None:
    sidecar = Sidecar(load_config_text(routes(sims, {"backend": "redis", "url": redis.url, "timeout_ms": 50}),
                                       source="test", env={}))  # fmt: skip
    async with serve_sidecar(sidecar) as url:
        await connected(sidecar)
        redis.pause()
        try:
            sims[0].script(RateLimit(retry_after="30"))  # a limit to publish while Redis hangs
            started = time.monotonic()
            for _ in range(5):
                assert (await chat(url)).status_code == 200
            assert time.monotonic() - started < 1.0, "requests never wait on Redis"
            deadline = time.monotonic() + 5
            while sidecar.shared.connected or not sidecar.shared.counters["errors"]:
                assert time.monotonic() < deadline, sidecar.shared.describe()
                await asyncio.sleep(0.01)
            assert sidecar.describe_config_source() is None
            state = sidecar.router.describe_state()["shared_state"]
            assert state["last_error"] in {"TimeoutError", "ConnectionError"}
        finally:
            redis.resume()
        await connected(sidecar)
        assert sidecar.shared.outages == 1


async def test_the_url_and_its_password_are_never_shown(
    sims: tuple[SimulatedProvider, SimulatedProvider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with redis_server("--requirepass", "another-one") as redis:
        url = f"redis://:s3cret-pass@127.0.0.1:{redis.port}/0"  # the wrong password: refused
        text = routes(sims, {"backend": "redis", "url": "$REDIS_URL"})
        sidecar = Sidecar(load_config_text(text, source="test", env={"REDIS_URL": url}))
        async with serve_sidecar(sidecar):
            deadline = time.monotonic() + 5
            while not sidecar.shared.counters["errors"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            state = sidecar.router.describe_state()
    assert "s3cret" not in repr(state)
    assert "s3cret" not in caplog.text
    assert "s3cret" not in repr(sidecar.shared.settings)
    assert "Redis unavailable (AuthenticationError)" in caplog.text


async def test_a_reload_to_memory_stops_the_sharing_and_memory_shows_nothing_of_it(
    redis: RedisServer, sims: tuple[SimulatedProvider, SimulatedProvider]
) -> None:
    sidecar = Sidecar(
        load_config_text(routes(sims, {"backend": "redis", "url": redis.url}), source="a", env={})
    )
    async with serve_sidecar(sidecar) as url:
        await connected(sidecar)
        assert sidecar.router.describe_state()["shared_state"]["connected"] is True
        sidecar.apply(load_config_text(routes(sims, None), source="b", env={}))
        await asyncio.sleep(0)
        assert "shared_state" not in sidecar.router.describe_state()
        assert sidecar.router.budgets.listener is None
        sims[0].script(RateLimit(retry_after="30"))
        await chat(url)
        assert sidecar.shared.counters["published"] == 0


async def test_limits_beyond_the_queue_are_dropped_and_counted(
    sims: tuple[SimulatedProvider, SimulatedProvider],
) -> None:
    link = FakeLink([], stuck=True)  # connects, then never finishes a write: the queue fills behind
    link.gate.set()
    text = routes(sims, {"backend": "redis", "url": "redis://127.0.0.1:1/0"})
    sidecar = Sidecar(load_config_text(text, source="t", env={}), shared_link=lambda _: link)  # type: ignore[arg-type,return-value]
    async with serve_sidecar(sidecar):
        await connected(sidecar)
        event = RateLimited("primary", "gpt-4o", 30.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT)
        for _ in range(shared_state.QUEUE_SIZE + 5):
            sidecar.shared.on_rate_limited(event)
        await asyncio.sleep(0)
        # Noted synchronously, on the request path: the queue takes QUEUE_SIZE, the rest is counted.
        assert sidecar.shared.counters["dropped"] == 5


def test_the_memory_backend_never_loads_redis() -> None:
    code = (
        "import sys, asyncio\n"
        "from sidecar.app import Sidecar\n"
        "from sidecar.config.loader import load_config_text\n"
        "text = ('providers: {a: {type: openai}}\\n'\n"
        "        'routing: {rules: [{name: r, matcher: {always: true}, primary: a}]}\\n')\n"
        "async def main():\n"
        "    sidecar = Sidecar(load_config_text(text, source='t', env={}))\n"
        "    assert sidecar.shared.settings is None\n"
        "    await sidecar.aclose()\n"
        "asyncio.run(main())\n"
        "assert 'redis' not in sys.modules, 'redis was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
