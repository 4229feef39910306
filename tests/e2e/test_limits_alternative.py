"""The seed project's six integration scenarios, end to end: real sidecar, real sockets, simulated
providers that answer like the real APIs. Time is a hand-driven clock, so no test sleeps."""

from __future__ import annotations

import httpx

from sidecar.simulate import RateLimit, SimulatedProvider
from tests.support.running import FakeClock, config_text, limits_alternative_rule, provider, running_sidecar

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
MESSAGES = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello"}],
}
AUTH = {"authorization": "Bearer sk-client"}


def openai_pair(
    primary: SimulatedProvider, backup: SimulatedProvider, *more: SimulatedProvider, **strategy: object
) -> str:
    providers = {
        "primary": provider("openai", primary.base_url),
        "backup": provider("openai", backup.base_url),
    }
    alternatives = ["backup"]
    for index, sim in enumerate(more, start=2):
        providers[f"alt{index}"] = provider("openai", sim.base_url)
        alternatives.append(f"alt{index}")
    return config_text(providers, [limits_alternative_rule(["primary"], alternatives, **strategy)])


async def test_a_429_from_the_primary_is_answered_by_the_alternative_in_the_same_request() -> None:
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
    ):
        primary.script(RateLimit(retry_after="30"))
        async with running_sidecar(openai_pair(primary, backup)) as detour, httpx.AsyncClient() as client:
            response = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
            second = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert response.headers["x-detour-attempts"] == "2"
    assert response.json()["choices"][0]["message"]["content"]
    assert second.headers["x-detour-provider"] == "backup"
    assert second.headers["x-detour-attempts"] == "1"
    assert len(primary.requests) == 1, "the limited primary is skipped, not asked again"
    assert [event.wait_s for event in detour.observer.rate_limited] == [30.0]


async def test_a_cascade_goes_through_every_limited_alternative_to_the_first_that_answers() -> None:
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
        SimulatedProvider("openai", name="third") as third,
    ):
        primary.script(RateLimit(retry_after="30"))
        backup.script(RateLimit(retry_after="30"))
        async with (
            running_sidecar(openai_pair(primary, backup, third)) as detour,
            httpx.AsyncClient() as client,
        ):
            response = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "alt2"
    assert response.headers["x-detour-attempts"] == "3"
    assert [(e.from_provider, e.to_provider) for e in detour.observer.failovers] == [
        ("primary", "backup"),
        ("backup", "alt2"),
    ]
    assert (len(primary.requests), len(backup.requests), len(third.requests)) == (1, 1, 1)


async def test_the_primary_is_used_again_once_its_one_second_retry_after_expires() -> None:
    clock = FakeClock()
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
    ):
        primary.script(RateLimit(retry_after="1"))
        async with (
            running_sidecar(openai_pair(primary, backup), clock=clock) as detour,
            httpx.AsyncClient() as client,
        ):
            failed_over = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
            clock.advance(0.5)
            still_limited = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
            clock.advance(0.6)
            recovered = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)

    assert failed_over.headers["x-detour-provider"] == "backup"
    assert still_limited.headers["x-detour-provider"] == "backup"
    assert recovered.headers["x-detour-provider"] == "primary"
    assert recovered.headers["x-detour-attempts"] == "1"
    assert len(primary.requests) == 2


async def test_when_every_candidate_is_limited_the_client_gets_429_with_the_soonest_retry_after() -> None:
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
    ):
        primary.script(RateLimit(retry_after="40"))
        backup.script(RateLimit(retry_after="7"))
        async with running_sidecar(openai_pair(primary, backup)) as detour, httpx.AsyncClient() as client:
            first = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)
            second = await client.post(detour.url + "/v1/chat/completions", json=CHAT, headers=AUTH)

    for response in (first, second):
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert 6 <= int(response.headers["retry-after"]) <= 7
        assert 6000 <= int(response.headers["retry-after-ms"]) <= 7000
    assert first.headers["x-detour-attempts"] == "2"
    assert second.headers["x-detour-attempts"] == "0", "nothing is sent while everything is limited"
    assert (len(primary.requests), len(backup.requests)) == (1, 1)


async def test_without_retry_after_the_applied_backoff_is_exponential_and_the_primary_returns_after_it() -> (
    None
):
    clock = FakeClock()
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
    ):
        primary.script(RateLimit(limit_headers=False), RateLimit(limit_headers=False))
        text = openai_pair(primary, backup, exponential_backoff_base_secs=10, max_backoff_secs=100)
        async with running_sidecar(text, clock=clock) as detour, httpx.AsyncClient() as client:
            url = detour.url + "/v1/chat/completions"
            assert (await client.post(url, json=CHAT, headers=AUTH)).headers["x-detour-provider"] == "backup"
            first_wait = detour.observer.rate_limited[0].wait_s
            clock.advance(first_wait - 0.01)
            assert (await client.post(url, json=CHAT, headers=AUTH)).headers["x-detour-provider"] == "backup"
            assert len(primary.requests) == 1, "skipped while limited"
            clock.advance(0.02)
            assert (await client.post(url, json=CHAT, headers=AUTH)).headers["x-detour-provider"] == "backup"
            second_wait = detour.observer.rate_limited[1].wait_s
            clock.advance(second_wait + 0.01)
            back = await client.post(url, json=CHAT, headers=AUTH)
            state = (await client.get(detour.url + "/admin/state")).json()

    assert 9.0 <= first_wait <= 11.0, "base 10 s with ±10 % jitter"
    assert 18.0 <= second_wait <= 22.0, "doubled for the second consecutive 429"
    assert [e.source for e in detour.observer.rate_limited] == ["backoff", "backoff"]
    assert back.headers["x-detour-provider"] == "primary"
    assert state["rate_limited"] == []


async def test_the_anthropic_endpoint_fails_over_the_same_way() -> None:
    async with (
        SimulatedProvider("anthropic", name="primary") as primary,
        SimulatedProvider("anthropic", name="backup") as backup,
    ):
        primary.script(RateLimit(retry_after="20"))
        providers = {
            "primary": provider("anthropic", primary.base_url),
            "backup": provider("anthropic", backup.base_url),
        }
        text = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
        headers = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}
        async with running_sidecar(text) as detour, httpx.AsyncClient() as client:
            response = await client.post(detour.url + "/v1/messages", json=MESSAGES, headers=headers)
            primary.script(RateLimit(retry_after="20"))
            backup.script(RateLimit(retry_after="5"))
            detour.sidecar.router.limits.clear("primary")
            limited = await client.post(detour.url + "/v1/messages", json=MESSAGES, headers=headers)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert response.json()["type"] == "message"
    assert backup.requests[0].headers["x-api-key"] == "sk-ant-client"
    assert limited.status_code == 429
    assert limited.json()["type"] == "error"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) == 5
