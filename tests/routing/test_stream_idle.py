"""`stream_idle_timeout_secs` bounds the gap between complete events, not between reads (issue 13):
an upstream that keeps sending a byte now and then without ever finishing an event is cut at about
the idle timeout, while one whose events arrive in pieces, each event within the timeout, is not.
Pauses are real (`Pause`, a few hundredths of a second) and small; no sockets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from tests.support.memory_transport import (
    Part,
    ScriptedBody,
    Stall,
    Upstreams,
    frame_event,
    frames_of,
    in_memory_detour,
    openai_at,
    openai_text,
    sse_response,
    stream_errors,
    stream_frames,
)
from tests.support.running import config_text, limits_alternative_rule

STORY = "Once upon a time there was a sidecar that never gave up."
FIRST_CONTENT = 4  # the role chunk and three words: the client has content, failures go in-band
IDLE_TIMEOUT = 0.2
PAUSE = 0.05
DRIBBLED_BYTES = 60  # 3 s of dribble: finished, it would end the stream as a success


@dataclass(eq=False)
class Pause(Stall):
    """The upstream goes quiet for `seconds`, then goes on by itself."""

    seconds: float = PAUSE

    async def wait(self) -> None:
        self.reached.set()
        await asyncio.sleep(self.seconds)


def config(idle_timeout: float) -> str:
    providers = {"primary": openai_at("primary", stream_idle_timeout_secs=idle_timeout)}
    return config_text(providers, [limits_alternative_rule(["primary"], [])])


class Recorded:
    """A handler that plays `script(frames)` and keeps the body, to see how far the upstream got."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.body: ScriptedBody | None = None

    def __call__(self, request: Any) -> Any:
        response = sse_response(self.script(stream_frames(request, STORY)))
        assert isinstance(response.stream, ScriptedBody)
        self.body = response.stream
        return response


def dribbled(frame: bytes, count: int) -> list[Part]:
    """The first `count` bytes of `frame` one at a time, a pause before each, then the rest of it."""
    parts: list[Part] = []
    for i in range(count):
        parts += [Pause(), frame[i : i + 1]]
    return [*parts, frame[count:]]


async def test_an_upstream_dribbling_bytes_after_the_first_content_is_cut_at_the_idle_timeout() -> None:
    def script(frames: list[bytes]) -> list[Part]:
        dribble = dribbled(frames[FIRST_CONTENT], DRIBBLED_BYTES)
        return [*frames[:FIRST_CONTENT], *dribble, *frames[FIRST_CONTENT + 1 :]]

    upstream = Recorded(script)
    async with in_memory_detour(config(IDLE_TIMEOUT), Upstreams(primary=upstream)) as detour:
        started = time.monotonic()
        response = await detour.chat(stream=True)
        elapsed = time.monotonic() - started
        counters = await detour.counters()

    assert upstream.body is not None
    dribble_s = PAUSE * sum(isinstance(part, Pause) for part in upstream.body.parts)
    assert dribble_s > 2.5, "the dribble alone would hold a timeout reset by any byte open for seconds"
    assert elapsed < 1.0, f"cut after {elapsed:.2f} s, not at about the {IDLE_TIMEOUT} s idle timeout"
    assert upstream.body.sent < len(upstream.body.parts), "the upstream was left mid-dribble"
    assert openai_text(response), "the content before the dribble reached the client"
    (error,) = stream_errors(response)
    assert "stalled" in error["message"]
    assert frame_event(frames_of(response)[-1]) is None
    assert "data: [DONE]" not in response.text
    assert counters["timeouts"] == 1


async def test_a_stream_whose_events_arrive_in_pieces_within_the_idle_timeout_completes() -> None:
    # Every event split in two reads with a pause between: a partial read trips nothing, and each
    # complete event starts a new gap.
    def script(frames: list[bytes]) -> list[Part]:
        parts: list[Part] = []
        for frame in frames:
            half = len(frame) // 2
            parts += [frame[:half], Pause(), frame[half:]]
        return parts

    upstream = Recorded(script)
    async with in_memory_detour(config(0.5), Upstreams(primary=upstream)) as detour:
        response = await detour.chat(stream=True)
        counters = await detour.counters()

    assert openai_text(response) == STORY
    assert stream_errors(response) == []
    assert response.text.rstrip().endswith("data: [DONE]")
    assert counters["timeouts"] == 0
