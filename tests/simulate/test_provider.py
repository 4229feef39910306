"""SimulatedProvider's lifecycle and fault behaviours: waiting for requests, delays, cut streams,
hangs and resets, and a stop that never waits for a hanging request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from sidecar.simulate import CutStream, Delay, Hang, Reply, ResetConnection, SimulatedProvider

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"authorization": "Bearer k"}


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedProvider]:
    async with SimulatedProvider("openai", name="faulty") as provider:
        yield provider


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def _stream_lines(
    raw: httpx.AsyncClient, sim: SimulatedProvider, lines: list[str], read_timeout: float = 5.0
) -> None:
    """Read a streamed completion's non-empty lines into `lines`, keeping those read before a failure."""
    body = {**BODY, "stream": True}
    url = f"{sim.base_url}/chat/completions"
    async with raw.stream("POST", url, json=body, headers=AUTH, timeout=read_timeout) as response:
        async for line in response.aiter_lines():
            if line:
                lines.append(line)


def test_a_provider_that_is_not_started_has_no_port() -> None:
    sim = SimulatedProvider("anthropic", name="idle")
    with pytest.raises(RuntimeError, match="idle is not started"):
        _ = sim.port
    assert "not started" in repr(sim)


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dialect"):
        SimulatedProvider("gemini")  # type: ignore[arg-type]


async def test_wait_for_requests_returns_when_enough_requests_arrive(
    sim: SimulatedProvider, raw: httpx.AsyncClient
) -> None:
    waiter = asyncio.create_task(sim.wait_for_requests(2))
    await asyncio.sleep(0)
    assert not waiter.done()

    for _ in range(2):
        await raw.post(f"{sim.base_url}/chat/completions", json=BODY, headers=AUTH)
    await asyncio.wait_for(waiter, 1)
    assert [r.at for r in sim.requests] == sorted(r.at for r in sim.requests)


async def test_wait_for_requests_times_out_naming_how_many_arrived(sim: SimulatedProvider) -> None:
    with pytest.raises(TimeoutError, match="faulty: 0 of 1 requests"):
        await sim.wait_for_requests(1, timeout=0.01)


async def test_a_delay_holds_the_answer_back(sim: SimulatedProvider, raw: httpx.AsyncClient) -> None:
    sim.script(Delay(0.05, Reply(text="late")))
    started = time.monotonic()
    response = await raw.post(f"{sim.base_url}/chat/completions", json=BODY, headers=AUTH)
    assert time.monotonic() - started >= 0.05
    assert response.json()["choices"][0]["message"]["content"] == "late"


async def test_a_cut_stream_closes_mid_body_after_the_given_events(
    sim: SimulatedProvider, raw: httpx.AsyncClient
) -> None:
    sim.script(CutStream(2))
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await _stream_lines(raw, sim, lines)
    assert len(lines) == 2


async def test_a_cut_stream_that_ends_cleanly_lacks_done(
    sim: SimulatedProvider, raw: httpx.AsyncClient
) -> None:
    sim.script(CutStream(3, Reply(text="a b c d"), how="end"))
    lines: list[str] = []
    await _stream_lines(raw, sim, lines)
    assert len(lines) == 3
    assert "data: [DONE]" not in lines


async def test_a_reset_stream_fails_with_a_transport_error(
    sim: SimulatedProvider, raw: httpx.AsyncClient
) -> None:
    sim.script(CutStream(1, how="reset"), ResetConnection())
    with pytest.raises(httpx.TransportError):
        await _stream_lines(raw, sim, [])
    with pytest.raises(httpx.TransportError):
        await raw.post(f"{sim.base_url}/chat/completions", json=BODY, headers=AUTH)


async def test_a_cut_non_streaming_reply_sends_half_the_announced_body(
    sim: SimulatedProvider, raw: httpx.AsyncClient
) -> None:
    sim.script(CutStream(0))
    with pytest.raises(httpx.RemoteProtocolError, match="received"):
        await raw.post(f"{sim.base_url}/chat/completions", json=BODY, headers=AUTH)


async def test_a_stalled_stream_times_out_the_reader(sim: SimulatedProvider, raw: httpx.AsyncClient) -> None:
    sim.script(CutStream(1, how="hang"))
    lines: list[str] = []
    with pytest.raises(httpx.ReadTimeout):
        await _stream_lines(raw, sim, lines, read_timeout=0.05)
    assert len(lines) == 1


async def test_stop_drops_hanging_requests_at_once(raw: httpx.AsyncClient) -> None:
    sim = SimulatedProvider("openai")
    await sim.start()
    sim.script(Hang(), Delay(60, Reply()))
    calls = [
        asyncio.create_task(raw.post(f"{sim.base_url}/chat/completions", json=BODY, headers=AUTH))
        for _ in range(2)
    ]
    await sim.wait_for_requests(2)

    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 0.5
    for call in calls:
        with pytest.raises(httpx.RemoteProtocolError):
            await call
