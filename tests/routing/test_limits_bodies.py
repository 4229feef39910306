"""A non-streaming upstream body is bounded by its provider's `max_response_bytes` (docs/architecture.md
§8): read incrementally and abandoned at the cap, it is a broken answer (outcome `stream_error`,
counted for the circuit) that fails over — never a partial answer, and never buffered whole.

Each test drives the real `Sidecar` in-process over `MemoryTransport`s with a `FakeClock`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from tests.support.memory_transport import (
    Handler,
    Upstreams,
    in_memory_detour,
    openai_at,
    openai_text,
    stream_frames,
    streamed,
)
from tests.support.running import config_text, limits_alternative_rule

CAP = 64 * 1024
CHUNK = 1024


class CountingBody(httpx.AsyncByteStream):
    """A body of `chunks` parts of `CHUNK` bytes, played by an async generator that counts the parts
    the reader actually pulled; sent without a content-length (chunked), so only reading tells."""

    def __init__(self, chunks: int, part: bytes = b"x" * CHUNK) -> None:
        self.chunks = chunks
        self.part = part
        self.consumed = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.consumed += 1
            yield self.part

    async def aclose(self) -> None:
        self.closed = True


def answering(body: CountingBody, *, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    def handle(request: Any) -> httpx.Response:
        return httpx.Response(
            status, headers={"content-type": "application/json", **(headers or {})}, stream=body
        )

    return handle


def pair(**primary: Any) -> str:
    settings = {"max_retries": 0, "max_response_bytes": CAP, **primary}
    providers = {
        "primary": openai_at("primary", **settings),
        "backup": openai_at("backup"),
    }
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])


async def test_a_body_over_the_cap_fails_over_and_is_not_read_to_its_end() -> None:
    oversized = CountingBody(chunks=200 * 1024)  # 200 MiB, were it read whole
    upstreams = Upstreams(primary=answering(oversized))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()
        state = await detour.state()

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert response.json()["choices"][0]["message"]["content"] == "Hello there.", "the backup's whole answer"
    assert upstreams.order == ["primary", "backup"]
    assert oversized.consumed <= CAP // CHUNK + 2, "reading stopped at the cap"
    assert oversized.closed, "the oversized response was closed (its connection released)"
    (circuit,) = state["circuits"]
    assert (circuit["provider"], circuit["consecutive_failures"]) == ("primary", 1), "counted as a failure"


async def test_by_default_a_body_over_32_mib_fails_over() -> None:
    mib = 1024 * 1024
    oversized = CountingBody(chunks=200, part=b"x" * mib)  # 200 MiB, were it read whole
    providers = {"primary": openai_at("primary", max_retries=0), "backup": openai_at("backup")}
    text = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    upstreams = Upstreams(primary=answering(oversized))
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "backup"
    assert oversized.consumed == 33, "32 MiB read, and the chunk that crossed the cap"


async def test_an_oversized_body_is_a_broken_answer_so_it_is_retried_like_one() -> None:
    small = orjson.dumps({"id": "x", "object": "chat.completion", "choices": []})
    bodies = [CountingBody(chunks=CAP // CHUNK + 1), CountingBody(chunks=1, part=small)]
    upstreams = Upstreams(primary=lambda request: answering(bodies.pop(0))(request))
    async with in_memory_detour(pair(max_retries=1, retry_backoff_ms=0), upstreams) as detour:
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "primary"
    assert response.headers["x-detour-attempts"] == "2", "stream_error: retried on the same candidate"
    assert response.content == small


async def test_a_declared_length_over_the_cap_fails_over_without_reading_the_body() -> None:
    declared = CountingBody(chunks=CAP // CHUNK + 1)
    upstreams = Upstreams(primary=answering(declared, headers={"content-length": str(CAP + CHUNK)}))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "backup"
    assert declared.consumed == 0


async def test_a_body_of_exactly_the_cap_is_an_answer() -> None:
    content = orjson.dumps({"id": "x", "object": "chat.completion", "choices": [], "pad": ""})
    padded = content[:-2] + b" " * (CAP - len(content)) + content[-2:]
    assert len(padded) == CAP
    upstreams = Upstreams(primary=answering(CountingBody(chunks=1, part=padded)))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "primary"
    assert response.content == padded


async def test_an_error_body_over_the_cap_is_not_read_whole_either() -> None:
    oversized = CountingBody(chunks=200 * 1024)
    upstreams = Upstreams(primary=answering(oversized, status=500))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "backup"
    assert oversized.consumed <= CAP // CHUNK + 2


async def test_a_stream_longer_than_the_cap_is_relayed_whole() -> None:
    """The cap bounds bodies read whole; a stream is relayed event by event and never buffered."""
    text = "word " * (CAP // 4)
    upstreams = Upstreams(primary=streamed(text))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat(stream=True)

    sent = sum(len(frame) for frame in stream_frames(upstreams.to("primary")[0], text))
    assert sent > CAP
    assert response.headers["x-detour-provider"] == "primary"
    assert openai_text(response) == text
