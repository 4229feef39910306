"""A soak: many mixed requests through a real `detour serve` while the simulated providers
misbehave, at a concurrency of 16. Every answer must be one of the documented outcomes
(`soak_mix.classify`), and the process must end as it began after warm-up: the same file
descriptors, no TCP connection left behind, resident memory within 5 %, state tables at their
bounds. `DETOUR_SOAK_REQUESTS` sets the number of requests (docs/testing.md has the long run)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sidecar.simulate import SimulatedProvider
from tests.hardening.serving import Serving, detour_serve, settle
from tests.hardening.soak_mix import TEXTS, Ask, asks, backup_script, classify, primary_script
from tests.support.running import config_text, limits_alternative_rule, provider

REQUESTS = int(os.environ.get("DETOUR_SOAK_REQUESTS", "1500"))
WARM_UP = max(500, REQUESTS // 5)
CONCURRENCY = 16
TABLE_SIZE = 20
RSS_DRIFT = 0.05
SEED = 20_261_203
BACKOFF: dict[str, Any] = {"exponential_backoff_base_secs": 0.5, "max_backoff_secs": 2}
HEADERS = {
    True: {"x-api-key": "sk-ant-soak-client", "anthropic-version": "2023-06-01"},
    False: {"authorization": "Bearer sk-soak-client"},
}


def soak_config(sims: dict[str, SimulatedProvider], generation: int) -> str:
    """`generation` changes every provider's settings, so applying it retires (and, once idle,
    closes) every connection pool."""
    settings = {
        "api_key": "sk-soak-provider",
        "retry_backoff_ms": 5,
        "timeout_secs": 2 + generation / 1000,
        "first_token_timeout_secs": 1,
        "stream_idle_timeout_secs": 0.3,
    }
    providers = {name: provider(sim.dialect, sim.base_url, **settings) for name, sim in sims.items()}
    # Nothing listens on the discard port: requests for `doomed-*` always run out of candidates.
    providers["gone"] = provider("openai", "http://127.0.0.1:9", **settings)
    rules = [
        {**limits_alternative_rule(["oa-a"], ["oa-b", "an-a"], pattern="^gpt-", **BACKOFF), "name": "gpt"},
        {**limits_alternative_rule(["an-a"], ["an-b", "oa-a"], pattern="^claude-", **BACKOFF), "name": "c"},
        {**limits_alternative_rule(["gone"], pattern="^doomed-"), "name": "doomed"},
    ]
    breaker = {"failure_threshold": 3, "timeout_secs": 30, "table_size": TABLE_SIZE}
    return config_text(providers, rules, rate_limit_table_size=TABLE_SIZE, circuit_breaker=breaker)


async def drive(url: str, work: Sequence[Ask]) -> Counter[str]:
    """Send every ask, `CONCURRENCY` at a time; count the outcomes."""
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[Ask] = asyncio.Queue()
    for ask in work:
        queue.put_nowait(ask)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            ask = queue.get_nowait()
            headers = HEADERS[ask.anthropic]
            async with client.stream("POST", ask.path, json=ask.body(), headers=headers) as response:
                if ask.abandon:
                    async for _ in response.aiter_raw():
                        break
                    outcomes["abandoned by the client"] += 1
                    continue
                body = await response.aread()
            outcomes[classify(ask, response.status_code, dict(response.headers), body)] += 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return outcomes


@dataclass(frozen=True)
class Held:
    """What the process holds once idle, its pools released."""

    fds: int
    rss_kib: int
    tcp: Counter[str]


async def idle(serving: Serving, sims: dict[str, SimulatedProvider], generation: int) -> Held:
    """Retire every provider's pool (a reload that changes each provider), then wait until the
    process holds no TCP connection but its listener."""
    assert await serving.reload(soak_config(sims, generation)) == "applied"
    tcp = await settle(serving.tcp_states, lambda states: set(states) == {"LISTEN"}, within_s=10)
    return Held(serving.fd_count(), serving.rss_kib(), tcp)


@pytest.mark.timeout(max(60, REQUESTS // 25))
async def test_a_soak_of_mixed_traffic_and_faults_leaks_nothing(tmp_path: pathlib.Path) -> None:
    rng = random.Random(SEED)
    async with contextlib.AsyncExitStack() as stack:
        sims = {
            name: await stack.enter_async_context(
                SimulatedProvider(
                    "anthropic" if name.startswith("an") else "openai", name=name, reply_text=text
                )
            )
            for name, text in TEXTS.items()
        }
        for name, sim in sims.items():
            script = primary_script if name.endswith("-a") else backup_script
            sim.script(*script(rng, 3 * (REQUESTS + WARM_UP)))
        serving = await stack.enter_async_context(detour_serve(soak_config(sims, 0), tmp_path))

        # Warm-up: traffic, then pools retired, twice (the first reloads raise the high-water mark
        # of memory by a few MiB: old and new pools live side by side for a moment).
        warm_outcomes = await drive(serving.url, asks(rng, WARM_UP))
        await idle(serving, sims, 1)
        warm_outcomes += await drive(serving.url, asks(rng, WARM_UP // 2))
        warm = await idle(serving, sims, 2)
        work = asks(rng, REQUESTS)
        for index in range(0, REQUESTS, 100):  # mixed in: some requests have nothing left to try
            work[index] = Ask(index % 200 == 0, False, "doomed-soak", False)
        outcomes = await drive(serving.url, work)
        end = await idle(serving, sims, 3)
        state = await serving.state()

    unclassified = {
        outcome: n for outcome, n in (warm_outcomes + outcomes).items() if "unclassified" in outcome
    }
    complete = outcomes["answered"] + outcomes["streamed"]
    report = f"{dict(outcomes)}; held after warm-up {warm}, at the end {end}"

    assert unclassified == {}, report
    assert sum(outcomes.values()) == REQUESTS, report
    assert complete >= 0.6 * REQUESTS, report
    assert outcomes["broken in-band"] > 0, report
    assert any(outcome.startswith("error ") for outcome in outcomes), f"none ran out of candidates: {report}"
    assert set(end.tcp) == {"LISTEN"}, f"connections left behind: {report}"
    assert end.fds <= warm.fds, f"file descriptors leaked: {report}"
    assert end.rss_kib <= warm.rss_kib * (1 + RSS_DRIFT), f"RSS drifted: {report}"
    for table in ("rate_limit_table", "circuit_table"):
        assert state[table]["capacity"] == TABLE_SIZE
        assert state[table]["size"] <= TABLE_SIZE, state[table]
        assert state[table]["evictions"] > 0, f"{table} never reached its bound: {state[table]}"
    assert len(state["rate_limited"]) <= state["rate_limited_total"] <= TABLE_SIZE
    assert len(state["circuits"]) <= state["circuits_total"] <= TABLE_SIZE
    assert state["counters"]["retries"] > 0
    assert state["counters"]["malformed_events"] > 0
