"""The circuit-breaker table is bounded (docs/architecture.md §8), through the whole sidecar: circuits
are keyed by the model names clients choose, so a flood of distinct models against a failing
provider must neither grow the table nor `/admin/state` without bound, and must not push out the
circuits that matter (the open ones).

Each test drives the real `Sidecar` in-process over `MemoryTransport`s with a `FakeClock`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import orjson

from sidecar.dialects import Dialect
from sidecar.errors import AllCandidatesFailed
from sidecar.providers.client import ClientHeaders
from sidecar.routing.exchange import InboundRequest
from sidecar.routing.failover import Router
from tests.support.memory_transport import (
    PROMPT,
    Script,
    Upstreams,
    in_memory_detour,
    openai_at,
    reply,
    server_error,
)
from tests.support.running import config_text, limits_alternative_rule

FAILED = orjson.dumps({"error": {"message": "boom", "type": "server_error"}})


def failing(request: Any) -> httpx.Response:
    """A 500 for every request, cheap enough to answer 30,000 of them."""
    return httpx.Response(500, content=FAILED, headers={"content-type": "application/json"})


def single(breaker: dict[str, Any] | None = None) -> str:
    routing = {"circuit_breaker": breaker} if breaker else {}
    providers = {"primary": openai_at("primary", max_retries=0)}
    return config_text(providers, [limits_alternative_rule(["primary"])], **routing)


async def route(router: Router, model: str) -> None:
    body = {"model": model, "messages": PROMPT}
    request = InboundRequest(
        Dialect.OPENAI, body, orjson.dumps(body), model, False, ClientHeaders(Dialect.OPENAI)
    )
    with contextlib.suppress(AllCandidatesFailed):
        await router.route(request)


async def test_30k_distinct_failing_models_keep_the_table_and_admin_state_bounded() -> None:
    upstreams = Upstreams(primary=failing)
    async with in_memory_detour(single(), upstreams) as detour:
        router = detour.sidecar.router
        for n in range(30_000):
            await route(router, f"model-{n}")
        response = await detour.request("GET", "/admin/state")

    state = response.json()
    assert len(upstreams.log) == 30_000, "every model was really tried and failed"
    assert len(response.content) < 32 * 1024, "not 11 MB"
    assert len(list(router.circuits.items())) == 1000
    assert (len(state["circuits"]), state["circuits_total"]) == (100, 1000)
    assert state["circuit_table"] == {"size": 1000, "capacity": 1000, "evictions": 29_000}
    assert state["counters"]["circuit_evictions"] == 29_000


async def test_the_table_size_is_a_setting_and_its_evictions_are_counters() -> None:
    upstreams = Upstreams(primary=server_error(503))
    async with in_memory_detour(single({"table_size": 20}), upstreams) as detour:
        for n in range(50):
            await detour.chat(f"model-{n}")
        state = await detour.state()

    assert state["circuit_table"] == {"size": 20, "capacity": 20, "evictions": 30}
    assert state["counters"]["circuit_evictions"] == 30
    assert [circuit["model"] for circuit in state["circuits"]] == [f"model-{n}" for n in range(30, 50)]


async def test_an_open_circuit_survives_a_flood_of_other_failing_models() -> None:
    breaker = {"failure_threshold": 2, "timeout_secs": 30, "table_size": 20}
    # gpt-4o's two failures open its circuit; then every other model fails once.
    upstreams = Upstreams(primary=Script(server_error(503), server_error(503), then=failing))
    async with in_memory_detour(single(breaker), upstreams) as detour:
        opened = [await detour.chat("gpt-4o") for _ in range(2)]
        for n in range(200):
            await detour.chat(f"junk-{n}")
        upstreams.clear()
        upstreams["primary"] = reply()
        skipped = await detour.chat("gpt-4o")
        state = await detour.state()

    assert [response.status_code for response in opened] == [502, 502]
    assert skipped.status_code == 503, "the open circuit still skips its candidate"
    assert upstreams.log == []
    assert state["circuits"][0]["model"] == "gpt-4o"
    assert state["circuits"][0]["state"] == "open"
    assert state["circuit_table"]["size"] == 20
