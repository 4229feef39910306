"""An in-Python load loop for the smoke run, so CI needs no `wrk`: aiohttp on uvloop, a fixed
number of requests over a fixed number of connections, every answer checked.

It is slower than wrk and shares a core with the upstream, so its absolute numbers are not the
benchmark's; it only has to tell "works and is not grossly slower than direct" from a regression.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    events: int = 0  # SSE events seen (streams only)
    headers: dict[str, str] = field(default_factory=dict)  # of the last answer

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, pct: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


async def _load(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    concurrency: int,
    total: int,
    timeout_s: float,
    stream: bool,
) -> LoadResult:
    result = LoadResult()
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=dict(headers)) as response:
                    payload = await response.read()
                    if response.status != 200:
                        result.errors.append(f"HTTP {response.status}: {payload[:200]!r}")
                        continue
                    if stream:
                        result.events += payload.count(b"\n\n")
                    result.headers = {k.lower(): v for k, v in response.headers.items()}
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            result.latencies_s.append(time.perf_counter() - started)
            result.requests += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result


def run_load(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    concurrency: int = 8,
    total: int = 500,
    timeout_s: float = 10,
    stream: bool = False,
) -> LoadResult:
    """`total` requests over `concurrency` keep-alive connections; bounded by count and timeout."""
    import uvloop

    return uvloop.run(
        _load(url, body, headers, concurrency=concurrency, total=total, timeout_s=timeout_s, stream=stream)
    )
