"""The Redis side of the merge rules (sidecar/shared/redis_link.py), on a real `redis-server`: a
record is written only if it beats the one held, lives exactly until its expiry, is published, and
is read back for the providers asked about."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.limits import LimitReason
from sidecar.shared import merge
from sidecar.shared.merge import SharedBudget, SharedCircuit, SharedLimit
from sidecar.shared.redis_link import RedisLink
from tests.shared.redis_server import redis_server

PREFIX = "t:"


@pytest.fixture
async def link() -> AsyncIterator[tuple[RedisLink, Redis]]:
    async with redis_server() as server:
        link = RedisLink(server.url, key_prefix=PREFIX, timeout_s=1.0)
        raw = Redis.from_url(server.url)
        try:
            yield link, raw
        finally:
            await link.close()
            await raw.aclose()


def limit(until: float, origin: str = "a", model: str = "gpt-4o") -> SharedLimit:
    return SharedLimit("openai", model, until, 1.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT, origin)


async def now(raw: Redis) -> float:
    seconds, micros = await raw.time()
    return seconds + micros / 1e6


async def test_the_longer_expiry_is_kept_whoever_writes_last(link: tuple[RedisLink, Redis]) -> None:
    writer, raw = link
    at = await now(raw)
    assert await writer.write(limit(at + 60, origin="a"))
    assert not await writer.write(limit(at + 30, origin="b")), "a shorter limit never shortens one held"
    assert not await writer.write(limit(at + 60, origin="b")), "a tie keeps the one held"
    held = merge.decode(await raw.get(merge.limit_key(PREFIX, "openai", "gpt-4o")))
    assert isinstance(held, SharedLimit)
    assert held.origin == "a"
    assert await writer.write(limit(at + 90, origin="b"))
    held = merge.decode(await raw.get(merge.limit_key(PREFIX, "openai", "gpt-4o")))
    assert isinstance(held, SharedLimit)
    assert held.origin == "b"


async def test_a_record_lives_until_its_absolute_expiry(link: tuple[RedisLink, Redis]) -> None:
    writer, raw = link
    at = await now(raw)
    await writer.write(limit(at + 42.5))
    expires_ms = await raw.pexpiretime(merge.limit_key(PREFIX, "openai", "gpt-4o"))
    assert abs(expires_ms / 1000 - (at + 42.5)) < 0.002


async def test_a_newer_budget_replaces_an_older_one_only(link: tuple[RedisLink, Redis]) -> None:
    writer, raw = link
    at = await now(raw)

    def budget(seen: float, requests: int) -> SharedBudget:
        return SharedBudget("openai", "gpt-4o", requests, at + 30, None, None, seen, "a")

    assert await writer.write(budget(at, 10))
    assert not await writer.write(budget(at - 1, 99))
    assert await writer.write(budget(at + 1, 2))
    held = merge.decode(await raw.get(merge.budget_key(PREFIX, "openai", "gpt-4o")))
    assert isinstance(held, SharedBudget)
    assert held.requests == 2


async def test_what_is_written_is_published(link: tuple[RedisLink, Redis]) -> None:
    writer, raw = link
    await writer.subscribe()
    record = limit(await now(raw) + 10)
    await writer.write(record)
    async with asyncio.timeout(5):
        async for data in writer.published():
            assert merge.decode(data) == record
            break


async def test_the_live_records_of_the_providers_asked_about(link: tuple[RedisLink, Redis]) -> None:
    writer, raw = link
    at = await now(raw)
    mine = [limit(at + 10, model=f"m{i}") for i in range(3)]
    for record in mine:
        await writer.write(record)
    other = SharedLimit("openai-2", "m", at + 10, 1.0, WaitSource.BACKOFF, LimitReason.RATE_LIMIT, "a")
    await writer.write(other)
    await raw.set(f"{PREFIX}limit:openai:junk", b"not a record")
    budget = SharedBudget("openai", "m0", 1, at + 5, None, None, at, "a")
    await writer.write(budget)

    found = await writer.live(["openai"], at_most=100)
    assert sorted(found, key=repr) == sorted([*mine, budget], key=repr)
    assert len(await writer.live(["openai"], at_most=2)) == 2
    assert await writer.live(["nobody"], at_most=100) == []


async def test_an_open_circuit_is_kept_until_the_latest_reopen_and_read_back_beside_the_limits(
    link: tuple[RedisLink, Redis],
) -> None:
    writer, raw = link
    at = await now(raw)
    assert await writer.write(SharedCircuit("openai", "gpt-4o", at + 30, "a"))
    assert not await writer.write(SharedCircuit("openai", "gpt-4o", at + 10, "b"))
    key = merge.circuit_key(PREFIX, "openai", "gpt-4o")
    assert abs(await raw.pexpiretime(key) / 1000 - (at + 30)) < 0.002
    assert await writer.write(limit(at + 5)), "a limit of the same candidate is another record"

    found = await writer.live(["openai"], at_most=100)
    assert sorted(found, key=repr) == sorted(
        [limit(at + 5), SharedCircuit("openai", "gpt-4o", at + 30, "a")], key=repr
    )
