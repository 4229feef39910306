"""Failures beyond 429 (SPEC §3): same-candidate retries, timeouts, circuit breakers, bounded waits
for a short Retry-After, and honest streams. Each test says what the client received, how many
requests each upstream saw, and that the sidecar keeps serving afterwards."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from sidecar.simulate import (
    CutStream,
    ErrorReply,
    Hang,
    MalformedEvent,
    RateLimit,
    Reply,
    ResetConnection,
    ServerError,
    SimulatedProvider,
    SlowStream,
)
from tests.support.running import (
    FakeClock,
    config_text,
    limits_alternative_rule,
    pair_config,
    provider,
    running_sidecar,
)

AUTH = {"authorization": "Bearer sk-client"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
STREAM = {**CHAT, "stream": True}


def pair(
    primary: SimulatedProvider, backup: SimulatedProvider, *, breaker: dict | None = None, **settings: object
) -> str:
    providers = {
        "primary": provider("openai", primary.base_url, **settings),
        "backup": provider("openai", backup.base_url),
    }
    routing = {"circuit_breaker": breaker} if breaker else {}
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"])], **routing)


async def post(detour_url: str, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=detour_url, headers=AUTH, timeout=10) as client:
        return await client.post("/v1/chat/completions", json=body)


async def test_a_single_500_is_retried_on_the_same_provider() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(ServerError(500))
        async with running_sidecar(pair(primary, backup)) as detour:
            response = await post(detour.url, CHAT)
            after = await post(detour.url, CHAT)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "primary"
    assert response.headers["x-detour-attempts"] == "2"
    assert len(primary.requests) == 3
    assert backup.requests == []
    assert after.headers["x-detour-attempts"] == "1"
    assert detour.sidecar.router.counters.retries == 1


async def test_a_connection_reset_before_headers_is_retried_then_fails_over() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.default = ResetConnection()
        async with running_sidecar(pair(primary, backup)) as detour:
            response = await post(detour.url, CHAT)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert response.headers["x-detour-attempts"] == "3"
    assert len(primary.requests) == 2
    assert [event.reason for event in detour.observer.failovers] == ["connect_error"]


async def test_a_provider_that_never_answers_times_out_and_is_not_asked_again() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.default = Hang()
        async with running_sidecar(pair(primary, backup, timeout_secs=0.3)) as detour:
            response = await post(detour.url, CHAT)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert len(primary.requests) == 1, "a silent provider is not retried"
    assert detour.sidecar.router.counters.timeouts == 1
    assert [event.reason for event in detour.observer.failovers] == ["timeout"]


async def test_a_slow_first_token_fails_over_before_anything_reaches_the_client() -> None:
    async with (
        SimulatedProvider("openai") as primary,
        SimulatedProvider("openai", reply_text="from backup") as backup,
    ):
        primary.default = SlowStream(first_event_delay_s=5)
        async with running_sidecar(pair(primary, backup, first_token_timeout_secs=0.3)) as detour:
            client = openai.AsyncOpenAI(base_url=detour.openai_base_url, api_key="sk", max_retries=0)
            stream = await client.chat.completions.create(**STREAM)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
            await client.close()

    assert text == "from backup"
    assert len(primary.requests) == 1


async def test_a_stream_that_stalls_after_content_ends_with_an_in_band_timeout_error() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(SlowStream(stall_after_events=3, stall_s=5))
        async with running_sidecar(pair(primary, backup, stream_idle_timeout_secs=0.3)) as detour:
            response = await post(detour.url, STREAM)
            after = await post(detour.url, CHAT)

    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert response.status_code == 200
    assert '"error"' in frames[-1]
    assert "stalled" in frames[-1]
    assert "[DONE]" not in response.text, "a stalled stream never ends as if it had succeeded"
    assert after.status_code == 200, "the sidecar keeps serving"


async def test_a_malformed_event_is_dropped_and_counted() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(MalformedEvent(after_events=2))
        async with running_sidecar(pair(primary, backup)) as detour:
            response = await post(detour.url, STREAM)

    assert "this is not json" not in response.text
    assert response.text.rstrip().endswith("data: [DONE]")
    assert detour.sidecar.router.counters.malformed_events == 1


async def test_a_stream_cut_after_n_events_is_reported_in_band_and_the_sidecar_keeps_serving() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(CutStream(after_events=3, how="reset"))
        async with running_sidecar(pair(primary, backup)) as detour:
            response = await post(detour.url, STREAM)
            after = await post(detour.url, STREAM)

    assert '"error"' in response.text.split("\n\n")[-2]
    assert "[DONE]" not in response.text
    assert after.text.rstrip().endswith("data: [DONE]")
    assert backup.requests == []


async def test_the_circuit_opens_after_repeated_failures_and_lets_one_probe_through_per_interval() -> None:
    clock = FakeClock()
    breaker = {"failure_threshold": 2, "success_threshold": 2, "timeout_secs": 30}
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.default = ServerError(503)
        async with running_sidecar(
            pair(primary, backup, breaker=breaker, max_retries=0), clock=clock
        ) as detour:
            for _ in range(2):  # two failed requests open the circuit
                assert (await post(detour.url, CHAT)).headers["x-detour-provider"] == "backup"
            assert len(primary.requests) == 2
            for _ in range(5):  # open: the primary costs nothing
                assert (await post(detour.url, CHAT)).headers["x-detour-attempts"] == "1"
            assert len(primary.requests) == 2
            async with httpx.AsyncClient() as client:
                state = (await client.get(detour.url + "/admin/state")).json()
            assert state["circuits"][0]["state"] == "open"

            clock.advance(30)  # half-open: one probe, which fails and reopens
            await post(detour.url, CHAT)
            await post(detour.url, CHAT)
            assert len(primary.requests) == 3

            primary.default = Reply()  # the primary recovers
            clock.advance(30)
            probe = await post(detour.url, CHAT)
            second = await post(detour.url, CHAT)
            closed = await post(detour.url, CHAT)

    assert probe.headers["x-detour-provider"] == "primary"
    assert second.headers["x-detour-provider"] == "primary"
    assert closed.headers["x-detour-provider"] == "primary"
    assert detour.sidecar.router.counters.circuit_opens == 2


async def test_a_primary_down_for_a_minute_is_served_from_the_alternative_and_used_again_after() -> None:
    clock = FakeClock()
    breaker = {"failure_threshold": 3, "success_threshold": 1, "timeout_secs": 10}
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.default = ServerError(503)
        async with running_sidecar(
            pair(primary, backup, breaker=breaker, max_retries=0), clock=clock
        ) as detour:
            served = []
            for _ in range(60):  # one request a second for a minute
                served.append((await post(detour.url, CHAT)).headers["x-detour-provider"])
                clock.advance(1)
            primary.default = Reply()
            recovered_at = clock.offset
            while (await post(detour.url, CHAT)).headers["x-detour-provider"] != "primary":
                clock.advance(1)
            back_after = clock.offset - recovered_at

    assert set(served) == {"backup"}
    assert len(primary.requests) <= 3 + 60 // 10 + 1, "at most one probe per breaker interval"
    assert back_after <= 10, "used again within one breaker timeout of its recovery"


async def test_a_short_retry_after_is_waited_out_when_no_other_candidate_is_available() -> None:
    clock = FakeClock()
    async with SimulatedProvider("openai") as primary:
        primary.script(RateLimit(retry_after="2"))
        providers = {"primary": provider("openai", primary.base_url)}
        rule = limits_alternative_rule(["primary"], max_wait_for_retry_after_secs=3)
        async with running_sidecar(config_text(providers, [rule]), clock=clock) as detour:
            response = await post(detour.url, CHAT)

    assert response.status_code == 200
    assert response.headers["x-detour-attempts"] == "2"
    assert clock.slept == [pytest.approx(2.0)]


async def test_a_long_retry_after_is_not_waited_out() -> None:
    clock = FakeClock()
    async with SimulatedProvider("openai") as primary:
        primary.script(RateLimit(retry_after="20"))
        providers = {"primary": provider("openai", primary.base_url)}
        rule = limits_alternative_rule(["primary"], max_wait_for_retry_after_secs=3)
        async with running_sidecar(config_text(providers, [rule]), clock=clock) as detour:
            response = await post(detour.url, CHAT)

    assert response.status_code == 429
    assert clock.slept == []


async def test_usage_asked_for_the_sidecars_own_accounting_is_not_shown_to_a_client_that_did_not_ask() -> (
    None
):
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        async with running_sidecar(pair(primary, backup)) as detour:
            plain = await post(detour.url, STREAM)
            asked = await post(detour.url, {**STREAM, "stream_options": {"include_usage": True}})

    assert primary.requests[0].body["stream_options"] == {"include_usage": True}
    assert '"usage":{' not in plain.text
    assert '"usage":{' in asked.text


OVERLOADED_EVENT = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


async def test_an_error_event_before_content_fails_over_and_frees_the_connection() -> None:
    async with SimulatedProvider("anthropic") as primary, SimulatedProvider("anthropic") as backup:
        primary.default = MalformedEvent(after_events=1, garbage=OVERLOADED_EVENT)  # message_start, error
        async with running_sidecar(pair_config(primary, backup)) as detour:
            body = {"model": "claude-x", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
            async with httpx.AsyncClient(base_url=detour.url, headers={"x-api-key": "k"}) as client:
                response = await client.post("/v1/messages", json={**body, "stream": True})
            table = detour.sidecar.current_table()
            assert table is not None
            old = table.clients["primary"]
            old.retire()
            async with asyncio.timeout(2):
                await old.wait_closed()  # hangs if the failed attempt's response was never closed

    assert response.headers["x-detour-provider"] == "backup"
    assert [event.reason for event in detour.observer.failovers] == ["server_error"]


async def test_a_client_error_event_inside_a_stream_reaches_the_client_with_its_reason() -> None:
    invalid = (
        b'event: error\ndata: {"type":"error",'
        b'"error":{"type":"invalid_request_error","message":"bad tool"}}\n\n'
    )
    async with SimulatedProvider("anthropic") as primary, SimulatedProvider("anthropic") as backup:
        primary.default = MalformedEvent(after_events=1, garbage=invalid)
        async with running_sidecar(pair_config(primary, backup)) as detour:
            body = {"model": "claude-x", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
            async with httpx.AsyncClient(base_url=detour.url, headers={"x-api-key": "k"}) as client:
                response = await client.post("/v1/messages", json={**body, "stream": True})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad tool"
    assert backup.requests == []


async def test_a_prompt_too_long_for_every_model_returns_the_providers_400_not_a_502() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as same_model:
        too_long = ErrorReply(
            400, "invalid_request_error", "maximum context length", code="context_length_exceeded"
        )
        primary.default = too_long
        providers = {
            "primary": provider("openai", primary.base_url),
            "same": provider("openai", same_model.base_url),
        }
        rule = limits_alternative_rule(["primary"], fallbacks=["same"])
        async with running_sidecar(config_text(providers, [rule])) as detour:
            response = await post(detour.url, CHAT)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert same_model.requests == [], "a fallback with the same model would overflow the same way"
