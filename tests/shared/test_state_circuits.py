"""Circuits in the shared state's shell (sidecar/shared/state.py), in one process with a fake link:
a circuit opened while Redis was away is written when it connects (a peer's never is), the circuits
Redis holds are adopted on connecting, and openings go through the same bounded queue as limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import yaml

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.shared import state as shared_state
from sidecar.shared.merge import SharedCircuit
from tests.shared.support import FakeLink

TIMEOUT_S = 30.0


def sidecar_on(link: FakeLink, *, failure_threshold: int = 5, table_size: int = 1000) -> Sidecar:
    breaker = {"failure_threshold": failure_threshold, "timeout_secs": TIMEOUT_S, "table_size": table_size}
    document: dict[str, Any] = {
        "providers": {"primary": {"type": "openai"}, "backup": {"type": "openai"}},
        "routing": {
            "rules": [{"name": "r", "matcher": {"always": True}, "primary": "primary"}],
            "circuit_breaker": breaker,
        },
        "state": {"backend": "redis", "url": "redis://127.0.0.1:1/0"},
    }
    text = yaml.safe_dump(document)
    return Sidecar(load_config_text(text, source="t", env={}), shared_link=lambda _: link)  # type: ignore[arg-type,return-value]


def trip(sidecar: Sidecar, model: str) -> None:
    circuits = sidecar.router.circuits
    for _ in range(circuits.settings.failure_threshold):
        circuits.record_failure("primary", model, sidecar.router.clock.monotonic())
    assert circuits.reopens_at("primary", model) is not None


async def connected(sidecar: Sidecar, *, within_s: float = 5) -> None:
    """Poll (the link has no event a test can await in-process) until the sidecar is connected."""
    deadline = time.monotonic() + within_s
    while not sidecar.shared.connected:
        assert time.monotonic() < deadline, sidecar.shared.describe()
        await asyncio.sleep(0.01)


async def test_on_connecting_own_open_circuits_are_written_and_the_ones_redis_holds_adopted() -> None:
    wall = time.time()
    peers = SharedCircuit("primary", "from-redis", wall + 10, "another-sidecar")
    link = FakeLink([peers])
    sidecar = sidecar_on(link)
    try:
        trip(sidecar, "gpt-4o")  # while Redis is away: not queued, left to the re-sync
        now = sidecar.router.clock.monotonic()
        assert sidecar.router.circuits.adopt("primary", "adopted-earlier", now + 5, now)
        link.gate.set()
        await connected(sidecar)

        [written] = link.written
        assert isinstance(written, SharedCircuit)
        assert (written.provider_id, written.model, written.origin) == (
            "primary",
            "gpt-4o",
            sidecar.shared.instance,
        )
        assert abs(written.until - (wall + TIMEOUT_S)) < 1.0
        reopens = sidecar.router.circuits.reopens_at("primary", "from-redis")
        assert reopens is not None
        assert abs(reopens - (sidecar.router.clock.monotonic() + 10)) < 1.0
        assert sidecar.shared.counters["peer_circuits"] == 1
    finally:
        await sidecar.aclose()


async def test_circuit_openings_share_the_bounded_queue_and_beyond_it_are_dropped_and_counted() -> None:
    link = FakeLink([], stuck=True)
    size = shared_state.QUEUE_SIZE
    sidecar = sidecar_on(link, failure_threshold=1, table_size=size + 10)
    try:
        link.gate.set()
        await connected(sidecar)
        for n in range(size + 5):
            trip(sidecar, f"model-{n}")  # each opening is noted on the request path, synchronously
        # Noted synchronously: the queue takes QUEUE_SIZE, the rest are counted.
        assert sidecar.shared.counters["dropped"] == 5
        await asyncio.sleep(0.01)
        [first] = link.written  # the writer took the first and is stuck on it
        assert isinstance(first, SharedCircuit)
        assert first.model == "model-0"
    finally:
        await sidecar.aclose()
