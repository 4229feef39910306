"""Fixtures the shared-state tests have in common: a real `redis-server` and two simulated providers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidecar.simulate import SimulatedProvider
from tests.shared.redis_server import RedisServer, redis_server


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    async with redis_server() as server:
        yield server


@pytest.fixture
async def primary() -> AsyncIterator[SimulatedProvider]:
    async with SimulatedProvider("openai", name="primary") as sim:
        yield sim


@pytest.fixture
async def backup() -> AsyncIterator[SimulatedProvider]:
    async with SimulatedProvider("openai", name="backup") as sim:
        yield sim
