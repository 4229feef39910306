"""Cluster-wide limits (docs/scale-out.md): two real `detour serve` processes share a real Redis.
One 429 steers both; the expiry brings both back; a Redis that dies costs nothing but the sharing,
which resumes when it returns; a restarted sidecar knows the limits in force."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from sidecar.simulate.behaviours import RateLimit
from sidecar.simulate.server import SimulatedProvider
from tests.shared.redis_server import RedisServer
from tests.shared.support import Sidecar, routes, sidecar

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def config(
    tmp_path: pathlib.Path, primary: SimulatedProvider, backup: SimulatedProvider, redis: RedisServer
) -> pathlib.Path:
    return routes(tmp_path, primary, backup, redis.url)


async def limited_everywhere_until_expiry(*sidecars: Sidecar, within_s: float) -> None:
    """Poll /admin/state (an expiry has no event) until no sidecar lists a limit."""
    deadline = time.monotonic() + within_s
    while True:
        states = [await each.state() for each in sidecars]
        if not any(state["rate_limited"] for state in states):
            return
        assert time.monotonic() < deadline, f"limits still listed after {within_s} s: {states}"
        await asyncio.sleep(0.05)


async def test_one_429_steers_the_other_sidecar_within_a_second_and_the_expiry_frees_both(
    config: pathlib.Path, primary: SimulatedProvider, backup: SimulatedProvider
) -> None:
    async with sidecar(config) as first, sidecar(config) as second:
        primary.script(RateLimit(retry_after="3"))
        answered = await first.chat()
        seen_at = time.monotonic()
        assert answered.headers["x-detour-provider"] == "backup"

        learned = await second.logs("by a peer", within_s=1.0)
        assert time.monotonic() - seen_at < 1.0
        assert "provider primary model gpt-4o" in learned
        sent_to_primary = len(primary.requests)

        answered = await second.chat()
        assert answered.status_code == 200
        assert answered.headers["x-detour-provider"] == "backup"
        assert answered.headers["x-detour-attempts"] == "1", "the limited candidate was not asked"
        assert len(primary.requests) == sent_to_primary
        [limit] = (await second.state())["rate_limited"]
        assert (limit["provider"], limit["model"], limit["learned_from"]) == ("primary", "gpt-4o", "peer")
        [own] = (await first.state())["rate_limited"]
        assert "learned_from" not in own, "the sidecar that met the 429 learned it itself"

        await limited_everywhere_until_expiry(first, second, within_s=5)
        for each in (first, second):
            answered = await each.chat()
            assert answered.headers["x-detour-provider"] == "primary"


async def test_a_dead_redis_costs_only_the_sharing_which_resumes_when_it_returns(
    config: pathlib.Path, primary: SimulatedProvider, redis: RedisServer
) -> None:
    async with sidecar(config) as first, sidecar(config) as second:
        await redis.kill()
        for each in (first, second):
            await each.logs("Redis unavailable (")
            answered = await each.chat()
            assert answered.status_code == 200
            assert answered.headers["x-detour-provider"] == "primary"
            shared = (await each.state())["shared_state"]
            assert shared["connected"] is False
            assert shared["errors"] >= 1
            assert shared["outages"] == 1
            assert shared["last_error"]

        # Learned while Redis is away: this sidecar's own, written to Redis once it is back.
        primary.script(RateLimit(retry_after="30"))
        assert (await first.chat()).headers["x-detour-provider"] == "backup"
        assert not (await second.state())["rate_limited"]

        await redis.start()
        for each in (first, second):
            await each.logs("Redis reachable again")
        await second.logs("by a peer", within_s=5)
        [limit] = (await second.state())["rate_limited"]
        assert limit["learned_from"] == "peer"
        assert 25 < limit["remaining_s"] <= 30
        shared = (await second.state())["shared_state"]
        assert shared["connected"] is True
        assert shared["outages"] == 1, "one outage, logged once, however many attempts it took"


async def test_a_restarted_sidecar_knows_the_limits_in_force(
    config: pathlib.Path, primary: SimulatedProvider
) -> None:
    async with sidecar(config) as first:
        primary.script(RateLimit(retry_after="30"))
        assert (await first.chat()).headers["x-detour-provider"] == "backup"
        await first.logs("rate-limited (rate_limit): waiting")
        # The write is asynchronous: the record is in Redis once the sidecar counts it published.
        deadline = time.monotonic() + 5
        while (await first.state())["shared_state"]["published"] < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

    sent_to_primary = len(primary.requests)
    async with sidecar(config) as restarted:
        [limit] = (await restarted.state())["rate_limited"]
        assert (limit["provider"], limit["learned_from"]) == ("primary", "peer")
        answered = await restarted.chat()
        assert answered.headers["x-detour-provider"] == "backup"
        assert len(primary.requests) == sent_to_primary
