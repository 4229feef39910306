"""Cluster-wide circuits (docs/scale-out.md): two real `detour serve` processes share a real Redis.
A circuit one sidecar opens after repeated 5xx makes the other skip that candidate within a second
without sending to it; when it half-opens, both probe it and come back; a restarted sidecar knows
the circuits open in the cluster."""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import Any

import pytest

from sidecar.simulate.behaviours import ServerError
from sidecar.simulate.server import SimulatedProvider
from tests.shared.redis_server import RedisServer
from tests.shared.support import Sidecar, routes, sidecar

pytestmark = pytest.mark.timeout(60)

FAILURES = 2  # the circuit's failure_threshold; one failed request counts once (no retries)


def circuit_config(
    directory: pathlib.Path,
    primary: SimulatedProvider,
    backup: SimulatedProvider,
    redis: RedisServer,
    *,
    timeout_secs: float,
) -> pathlib.Path:
    breaker = {"failure_threshold": FAILURES, "success_threshold": 1, "timeout_secs": timeout_secs}
    return routes(directory, primary, backup, redis.url, circuit_breaker=breaker, max_retries=0)


async def open_the_primarys_circuit(on: Sidecar, primary: SimulatedProvider) -> None:
    """Requests whose primary answers 500 until its circuit opens on `on`; each is served by backup."""
    primary.script(*[ServerError() for _ in range(FAILURES)])
    for _ in range(FAILURES):
        answered = await on.chat()
        assert answered.headers["x-detour-provider"] == "backup"
    await on.logs("circuit of primary / gpt-4o opened after repeated failures")


def open_circuits(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [each for each in state["circuits"] if each["state"] == "open" and each["retry_in_s"]]


async def reopened_everywhere(*sidecars: Sidecar, within_s: float) -> None:
    """Poll /admin/state (a circuit half-opening has no event) until no sidecar skips a candidate."""
    deadline = time.monotonic() + within_s
    while True:
        states = [await each.state() for each in sidecars]
        if not any(open_circuits(state) for state in states):
            return
        assert time.monotonic() < deadline, f"circuits still open after {within_s} s: {states}"
        await asyncio.sleep(0.05)


async def test_a_circuit_opened_on_one_sidecar_is_skipped_by_the_other_within_a_second_until_it_reopens(
    tmp_path: pathlib.Path, primary: SimulatedProvider, backup: SimulatedProvider, redis: RedisServer
) -> None:
    config = circuit_config(tmp_path, primary, backup, redis, timeout_secs=3)
    async with sidecar(config) as first, sidecar(config) as second:
        await open_the_primarys_circuit(first, primary)
        opened_at = time.monotonic()

        learned = await second.logs("opened by a peer", within_s=1.0)
        assert time.monotonic() - opened_at < 1.0
        assert "circuit of primary / gpt-4o" in learned
        sent_to_primary = len(primary.requests)

        answered = await second.chat()
        assert answered.status_code == 200
        assert answered.headers["x-detour-provider"] == "backup"
        assert answered.headers["x-detour-attempts"] == "1", "the candidate behind the circuit was not asked"
        assert len(primary.requests) == sent_to_primary
        state = await second.state()
        [circuit] = state["circuits"]
        assert (circuit["provider"], circuit["model"], circuit["state"]) == ("primary", "gpt-4o", "open")
        assert circuit["learned_from"] == "peer"
        assert 0 < circuit["retry_in_s"] <= 3
        assert state["shared_state"]["peer_circuits"] == 1
        [own] = (await first.state())["circuits"]
        assert "learned_from" not in own, "the sidecar that met the failures opened it itself"
        assert not state["rate_limited"], "a circuit is not a rate limit"

        await reopened_everywhere(first, second, within_s=5)
        for each in (second, first):  # half-open: the probe goes to primary, which answers again
            answered = await each.chat()
            assert answered.headers["x-detour-provider"] == "primary"
        assert len(primary.requests) == sent_to_primary + 2
        for each in (first, second):
            assert (await each.state())["circuits"] == [], "the probe's success closed it"


async def test_a_restarted_sidecar_knows_the_circuits_open_in_the_cluster(
    tmp_path: pathlib.Path, primary: SimulatedProvider, backup: SimulatedProvider, redis: RedisServer
) -> None:
    config = circuit_config(tmp_path, primary, backup, redis, timeout_secs=30)
    async with sidecar(config) as first:
        await open_the_primarys_circuit(first, primary)
        # The write is asynchronous: the record is in Redis once the sidecar counts it published.
        deadline = time.monotonic() + 5
        while (await first.state())["shared_state"]["published"] < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

    sent_to_primary = len(primary.requests)
    async with sidecar(config) as restarted:
        [circuit] = (await restarted.state())["circuits"]
        assert (circuit["provider"], circuit["state"], circuit["learned_from"]) == ("primary", "open", "peer")
        assert 20 < circuit["retry_in_s"] <= 30
        answered = await restarted.chat()
        assert answered.headers["x-detour-provider"] == "backup"
        assert answered.headers["x-detour-attempts"] == "1"
        assert len(primary.requests) == sent_to_primary
