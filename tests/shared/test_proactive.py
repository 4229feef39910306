"""Proactive routing on remaining quota (`min_remaining`, docs/scale-out.md): a candidate whose
last-seen budget is under the threshold is passed over before any 429, until its reset — across
sidecars when the state is shared, within one when it is not."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from sidecar.simulate.behaviours import Reply
from sidecar.simulate.server import SimulatedProvider
from tests.shared.redis_server import RedisServer
from tests.shared.support import CHAT, routes, sidecar
from tests.support.running import config_text, limits_alternative_rule, provider, running_sidecar

pytestmark = pytest.mark.timeout(60)

RESET_S = 2.0


def low(requests: int, reset: str = f"{RESET_S:g}s") -> Reply:
    """An answer that says only `requests` requests are left until `reset`."""
    return Reply(
        headers={"x-ratelimit-remaining-requests": str(requests), "x-ratelimit-reset-requests": reset}
    )


@pytest.fixture
async def sims() -> AsyncIterator[tuple[SimulatedProvider, SimulatedProvider]]:
    async with SimulatedProvider("openai", name="primary") as primary, SimulatedProvider("openai") as backup:
        yield primary, backup


async def test_both_sidecars_switch_before_any_429_and_come_back_after_the_reset(
    tmp_path: pathlib.Path, redis: RedisServer, sims: tuple[SimulatedProvider, SimulatedProvider]
) -> None:
    primary, backup = sims
    config = routes(tmp_path, primary, backup, redis.url, min_remaining={"requests": 5})
    async with sidecar(config) as first, sidecar(config) as second:
        primary.script(low(2))
        answered = await first.chat()
        reset_by = time.monotonic() + RESET_S  # the sidecar saw the answer before the test did
        assert answered.headers["x-detour-provider"] == "primary"

        answered = await first.chat()
        assert answered.headers["x-detour-provider"] == "backup"
        assert answered.headers["x-detour-attempts"] == "1", "passed over, not tried"

        # A budget is written without a log line: poll the peer's counter with a deadline.
        deadline = time.monotonic() + 1.0
        while not (await second.state())["shared_state"]["peer_budgets"]:
            assert time.monotonic() < deadline, "the budget did not reach the other sidecar within 1 s"
            await asyncio.sleep(0.02)
        answered = await second.chat()
        assert answered.headers["x-detour-provider"] == "backup"
        assert len(primary.requests) == 1, "no 429 was ever needed"

        await asyncio.sleep(max(reset_by - time.monotonic(), 0) + 0.05)  # the reset is a time, not an event
        for each in (first, second):
            assert (await each.chat()).headers["x-detour-provider"] == "primary"


async def test_a_budget_above_the_threshold_changes_nothing(
    sims: tuple[SimulatedProvider, SimulatedProvider],
) -> None:
    primary, backup = sims
    text = config_text(
        {"primary": provider("openai", primary.base_url), "backup": provider("openai", backup.base_url)},
        [limits_alternative_rule(["primary"], ["backup"], min_remaining={"requests": 5})],
    )
    async with running_sidecar(text) as detour, httpx.AsyncClient(timeout=10) as client:
        primary.script(low(5), low(4))
        headers = {"authorization": "Bearer sk-client"}
        served = []
        for _ in range(3):
            answer = await client.post(f"{detour.url}/v1/chat/completions", json=CHAT, headers=headers)
            served.append(answer.headers["x-detour-provider"])
        assert served == ["primary", "primary", "backup"]


@pytest.mark.parametrize(("prompt_chars", "expected"), [(40, "primary"), (8000, "backup")])
async def test_tokens_are_compared_with_the_requests_estimated_input_tokens(
    sims: tuple[SimulatedProvider, SimulatedProvider], prompt_chars: int, expected: str
) -> None:
    primary, backup = sims
    text = config_text(
        {"primary": provider("openai", primary.base_url), "backup": provider("openai", backup.base_url)},
        [limits_alternative_rule(["primary"], ["backup"], min_remaining={"tokens": 1000})],
    )
    tokens_left = Reply(headers={"x-ratelimit-remaining-tokens": "2500", "x-ratelimit-reset-tokens": "30s"})
    async with running_sidecar(text) as detour, httpx.AsyncClient(timeout=10) as client:
        primary.script(tokens_left)
        headers = {"authorization": "Bearer sk-client"}
        await client.post(f"{detour.url}/v1/chat/completions", json=CHAT, headers=headers)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * prompt_chars}]}
        # 2500 left: 40 characters (~25 tokens with the JSON) leave plenty; 8000 (~2000) do not.
        answer = await client.post(f"{detour.url}/v1/chat/completions", json=body, headers=headers)
        assert answer.headers["x-detour-provider"] == expected


async def test_off_unless_configured_no_answers_headers_are_read(
    sims: tuple[SimulatedProvider, SimulatedProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost of the option when off: one attribute check per request and one per attempt
    (measured in docs/scale-out.md); nothing parses a budget."""
    primary, backup = sims

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a budget was parsed with the option off")

    monkeypatch.setattr("sidecar.routing.budgets.parse_remaining", never)
    text = config_text(
        {"primary": provider("openai", primary.base_url), "backup": provider("openai", backup.base_url)},
        [limits_alternative_rule(["primary"], ["backup"])],
    )
    async with running_sidecar(text) as detour, httpx.AsyncClient(timeout=10) as client:
        primary.script(low(0), low(0))
        for _ in range(2):
            answer = await client.post(
                f"{detour.url}/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-c"}
            )
            assert answer.headers["x-detour-provider"] == "primary"
        assert detour.sidecar.router._budget_sink is None
        assert len(detour.sidecar.router.budgets) == 0
