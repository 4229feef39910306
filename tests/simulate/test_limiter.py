"""WindowLimiter: pure window arithmetic on a fake clock, then as a provider's 429s over HTTP."""

from __future__ import annotations

import anthropic
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from sidecar.simulate import RateLimit, Reply, SimulatedProvider, WindowLimiter

OPENAI_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
ANTHROPIC_MESSAGES: list[MessageParam] = [{"role": "user", "content": "hi"}]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_window_admits_max_requests_then_refuses_until_it_resets() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(2, window_s=10, clock=clock)

    assert [limiter.acquire().admitted for _ in range(3)] == [True, True, False]
    clock.now += 9.5
    assert not limiter.acquire().admitted
    clock.now += 0.5
    assert limiter.acquire().admitted


def test_the_state_reports_remaining_and_time_to_reset() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(2, window_s=10, clock=clock)

    first = limiter.acquire()
    clock.now += 4
    second = limiter.acquire()
    refused = limiter.acquire()

    assert (first.remaining, first.reset_in) == (1, 10)
    assert (second.remaining, second.reset_in) == (0, 6)
    assert (refused.admitted, refused.remaining, refused.limit) == (False, 0, 2)


@pytest.mark.parametrize(
    ("elapsed", "retry_after"),
    [(0.0, "10"), (4.5, "6"), (9.1, "1"), (9.999, "1")],
)
def test_retry_after_is_the_time_to_reset_rounded_up(elapsed: float, retry_after: str) -> None:
    clock = FakeClock()
    limiter = WindowLimiter(0, window_s=10, clock=clock)
    limiter.acquire()  # opens the window
    clock.now += elapsed
    assert limiter.acquire().retry_after == retry_after


@pytest.mark.parametrize(("max_requests", "window_s"), [(-1, 10), (1, 0)])
def test_nonsense_settings_are_refused(max_requests: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        WindowLimiter(max_requests, window_s)


async def test_an_openai_provider_rate_limits_after_the_window_fills_and_serves_again_after_it() -> None:
    clock = FakeClock()
    async with (
        SimulatedProvider("openai") as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client,
    ):
        sim.set_limiter(WindowLimiter(2, window_s=10, clock=clock))
        sim.script(Reply(text="first"), Reply(text="second"), Reply(text="third"))
        ok = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=OPENAI_MESSAGES)
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        await client.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES)

        clock.now += 2.5
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES)
        headers = caught.value.response.headers
        assert headers["retry-after"] == "8"
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"] == "7.5s"
        assert caught.value.code == "rate_limit_exceeded"

        clock.now += 7.5
        completion = await client.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES)
        assert completion.choices[0].message.content == "third"  # the 429 consumed no scripted reply


async def test_the_limiter_is_checked_before_the_script() -> None:
    clock = FakeClock()
    async with (
        SimulatedProvider("anthropic") as sim,
        anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as client,
    ):
        sim.set_limiter(WindowLimiter(0, window_s=30, clock=clock))
        sim.script(RateLimit(retry_after="999"))
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=ANTHROPIC_MESSAGES)
        headers = caught.value.response.headers
        assert headers["retry-after"] == "30"
        assert headers["anthropic-ratelimit-requests-limit"] == "0"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"

        sim.set_limiter(None)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=ANTHROPIC_MESSAGES)
        assert caught.value.response.headers["retry-after"] == "999"
