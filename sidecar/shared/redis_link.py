"""The one module that talks to Redis (redis-py's asyncio client): write a record if it wins,
read the live records of some providers, and hear what the others publish.

A link is one connection attempt's worth of clients: the state shell makes a new one after any
failure, so nothing here retries (redis-py's own retries are off) and every command is bounded by
the configured `timeout_ms`. Imported only when `state.backend` is `redis`, so a sidecar on the
default memory backend never loads redis-py.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sidecar.shared.merge import (
    BUDGET,
    CIRCUIT,
    LIMIT,
    WRITE_IF_LATER,
    Record,
    channel,
    compared,
    decode,
    encode,
    key_of,
    provider_pattern,
)

CONNECT_TIMEOUT_S = 1.0  # connecting happens off the request path; a command has `timeout_ms`
LISTEN_POLL_S = 1.0  # how long one wait for a published record lasts (the loop goes round)
SCAN_BATCH = 200


class RedisLink:
    def __init__(self, url: str, *, key_prefix: str, timeout_s: float) -> None:
        self.prefix = key_prefix
        self._channel = channel(key_prefix)
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=max(timeout_s, CONNECT_TIMEOUT_S),
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
            client_name="detour",
        )
        self._listener = self._client.pubsub(ignore_subscribe_messages=True)
        self._write = self._client.register_script(WRITE_IF_LATER)

    async def subscribe(self) -> None:
        """Connect and subscribe; from here on nothing published is missed."""
        await self._listener.subscribe(self._channel)

    async def ping(self) -> None:
        await self._client.ping()

    async def write(self, record: Record) -> bool:
        """Store and publish `record` unless the one held wins (docs/scale-out.md, "Consistency");
        whether it was written."""
        field, value = compared(record)
        expire_ms = math.ceil(record.until * 1000)
        written = await self._write(
            keys=[key_of(self.prefix, record)],
            args=[encode(record), field, repr(value), expire_ms, self._channel],
        )
        return bool(written)

    async def live(self, provider_ids: Iterable[str], *, at_most: int) -> list[Record]:
        """The records held for these providers (limits, then circuits, then budgets: the ones that
        skip a candidate before the ones that only reorder), at most `at_most` of them."""
        records: list[Record] = []
        for kind in (LIMIT, CIRCUIT, BUDGET):
            for provider_id in provider_ids:
                keys: list[bytes] = []
                async for key in self._client.scan_iter(
                    match=provider_pattern(self.prefix, kind, provider_id), count=SCAN_BATCH
                ):
                    keys.append(key)
                    if len(keys) + len(records) >= at_most:
                        break
                for start in range(0, len(keys), SCAN_BATCH):
                    for data in await self._client.mget(keys[start : start + SCAN_BATCH]):
                        record = decode(data) if data is not None else None
                        if record is not None and record.provider_id == provider_id:
                            records.append(record)
                if len(records) >= at_most:
                    return records[:at_most]
        return records

    async def published(self) -> AsyncIterator[bytes]:
        """Each record another sidecar (or this one) publishes, as sent; raises when the
        connection is lost."""
        while True:
            message = await self._listener.get_message(timeout=LISTEN_POLL_S)
            if message is not None and message.get("type") == "message":
                data = message.get("data")
                if isinstance(data, bytes):
                    yield data

    async def close(self) -> None:
        try:
            # Through a typed name: redis-py before 8.2 leaves `aclose` unannotated, 8.2 annotates it.
            close_listener: Callable[[], Awaitable[None]] = self._listener.aclose
            await close_listener()
        finally:
            await self._client.aclose()
