"""Slow and idle clients cannot hold the sidecar's connections (docs/operations.md, "Timeouts"): a
request head and a request body each have a deadline, and an idle kept-alive connection is closed.
The real server on 127.0.0.1 with short settings; raw sockets, so the test controls every byte's
timing, and each close is awaited as the end of the stream, never slept for."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.dialects import Dialect
from sidecar.providers.client import ClientHeaders
from sidecar.simulate import SimulatedProvider
from tests.ingress.wire import connection, port_of, read_response
from tests.support.running import config_text, limits_alternative_rule, provider, serve_sidecar

HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
CHAT = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[int]:
    """A sidecar with no config (its probes answer) on a free port with `options`; its port."""
    async with serve_sidecar(Sidecar(), **options) as url:
        yield port_of(url)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server still writes, up to its close (the test fails if it never closes)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


def chat_head(content_length: int) -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer sk\r\n"
        f"content-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    ).encode()


def assert_408(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 408
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    error = orjson.loads(body)
    assert error["type"] == "error", "the Anthropic shape…"
    assert error["error"]["code"] == "request_timeout", "…and the OpenAI shape at once"
    assert error["error"]["message"]


# --- the request head ------------------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout() -> None:
    async with serving(header_timeout_secs=0.3) as port, connection(port) as (reader, _):
        opened = time.perf_counter()
        written = await closed_within(reader, 3)
        elapsed = time.perf_counter() - opened

    assert written == b"", "nothing was asked, so nothing is answered: the connection just closes"
    assert 0.25 <= elapsed < 2, f"closed after {elapsed:.2f} s"


async def test_a_head_trickled_past_the_header_timeout_gets_408_then_the_connection_closes() -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        """A slow-loris: a header byte every 50 ms, each read resetting nothing."""
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)

    async with serving(header_timeout_secs=0.3) as port, connection(port) as (reader, writer):
        opened = time.perf_counter()
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
        trickling = asyncio.create_task(trickle(writer))
        try:
            status, headers, body = await asyncio.wait_for(read_response(reader), 3)
            elapsed = time.perf_counter() - opened
            rest = await closed_within(reader, 3)
        finally:
            trickling.cancel()

    assert_408(status, headers, body)
    assert orjson.loads(body)["error"]["message"] == "request head not complete in 0.3 s"
    assert 0.25 <= elapsed < 2, f"answered after {elapsed:.2f} s"
    assert rest == b""


async def test_the_header_timeout_starts_again_when_the_previous_request_ends() -> None:
    """Three requests on one connection, spread over more than the header timeout in total; each
    head is complete well within it, counted from the previous answer."""
    async with serving(header_timeout_secs=0.4) as port, connection(port) as (reader, writer):
        opened = time.perf_counter()
        statuses = []
        for _ in range(3):
            writer.write(HEALTHZ)
            statuses.append((await asyncio.wait_for(read_response(reader), 3))[0])
            await asyncio.sleep(0.2)  # the client's pause between requests, not a wait for the server
        writer.write(HEALTHZ)
        statuses.append((await asyncio.wait_for(read_response(reader), 3))[0])
        spread = time.perf_counter() - opened

    assert statuses == [200, 200, 200, 200]
    assert spread > 0.6, "more than the header timeout passed since the connection opened"


async def test_a_complete_head_is_not_held_to_the_header_timeout_while_its_answer_is_computed() -> None:
    """The head deadline stops at the head's end: a request whose body and answer take longer than
    the header timeout is served (here: the body trickles in over twice the header timeout)."""
    async with SimulatedProvider("openai") as upstream:
        routes = config_text({"p": provider("openai", upstream.base_url)}, [limits_alternative_rule(["p"])])
        sidecar = Sidecar(load_config_text(routes, source="test", env={}))
        async with serve_sidecar(sidecar, header_timeout_secs=0.2, body_timeout_secs=3) as url:
            async with connection(port_of(url)) as (reader, writer):
                writer.write(chat_head(len(CHAT)))
                for start in range(0, len(CHAT), len(CHAT) // 4 + 1):
                    await asyncio.sleep(0.1)  # the client's pace
                    writer.write(CHAT[start : start + len(CHAT) // 4 + 1])
                status, headers, _ = await asyncio.wait_for(read_response(reader), 5)

    assert status == 200
    assert headers["x-detour-provider"] == "p"
    assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "hi"}]


# --- keep-alive -------------------------------------------------------------------------------------


async def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() -> None:
    async with (
        serving(keepalive_timeout_secs=0.3, header_timeout_secs=10) as port,
        connection(port) as (reader, writer),
    ):
        writer.write(HEALTHZ)
        status, headers, _ = await asyncio.wait_for(read_response(reader), 3)
        answered = time.perf_counter()
        rest = await closed_within(reader, 3)
        idle = time.perf_counter() - answered

    assert status == 200
    assert "connection" not in headers, "the answer kept the connection alive"
    assert rest == b"", "closed without a word: nothing was asked"
    assert 0.25 <= idle < 2, f"closed after {idle:.2f} s idle, well before the 10 s header timeout"


async def test_a_head_begun_within_the_keepalive_timeout_gets_the_whole_header_timeout() -> None:
    async with (
        serving(keepalive_timeout_secs=0.2, header_timeout_secs=0.6) as port,
        connection(port) as (reader, writer),
    ):
        writer.write(HEALTHZ)
        assert (await asyncio.wait_for(read_response(reader), 3))[0] == 200
        answered = time.perf_counter()
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # the next request begins, and stalls
        status, headers, body = await asyncio.wait_for(read_response(reader), 3)
        waited = time.perf_counter() - answered
        rest = await closed_within(reader, 3)

    assert_408(status, headers, body)
    assert waited >= 0.5, f"408 after {waited:.2f} s: not at the keep-alive timeout, at the header one"
    assert rest == b""


# --- the request body -------------------------------------------------------------------------------


@dataclass
class RecordedTrace:
    """Stands in for telemetry's per-request trace: the ingress ends it when the request's task
    ends, with the status it answered — 499 when the app saw `http.disconnect` mid-body."""

    ended: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None

    def end(self, status: int | None) -> None:
        self.status = status
        self.ended.set()


@dataclass
class RecordingTracing:
    traces: list[RecordedTrace] = field(default_factory=list)

    def start_request(self, dialect: Dialect, path: str, headers: ClientHeaders) -> RecordedTrace:
        self.traces.append(RecordedTrace())
        return self.traces[-1]


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_nothing_goes_upstream() -> None:
    async with SimulatedProvider("openai") as upstream:
        routes = config_text({"p": provider("openai", upstream.base_url)}, [limits_alternative_rule(["p"])])
        sidecar = Sidecar(load_config_text(routes, source="test", env={}))
        tracing = RecordingTracing()
        sidecar.router.tracing = tracing  # type: ignore[assignment]  # a trace's `end` is all that is used
        async with serve_sidecar(sidecar, body_timeout_secs=0.3) as url:
            async with connection(port_of(url)) as (reader, writer):
                writer.write(chat_head(1_000_000_000) + CHAT)  # a gigabyte announced, 60 bytes sent
                started = time.perf_counter()
                status, headers, body = await asyncio.wait_for(read_response(reader), 3)
                elapsed = time.perf_counter() - started
                rest = await closed_within(reader, 3)
            await asyncio.wait_for(tracing.traces[0].ended.wait(), 3)

    assert_408(status, headers, body)
    assert orjson.loads(body)["error"]["message"] == "request body not complete in 0.3 s"
    assert 0.25 <= elapsed < 2, f"answered after {elapsed:.2f} s"
    assert rest == b""
    assert tracing.traces[0].status == 499, "the request's task saw the client go and ended"
    assert upstream.requests == [], "nothing was sent upstream"


async def test_a_body_beyond_the_cap_still_gets_its_413_and_the_connection_closes_at_the_body_timeout() -> (
    None
):
    """The 413 is sent while the rest of the body is still announced: the body timeout closes the
    connection (the answer has started, so no 408 follows it)."""
    async with (
        serving(max_body_bytes=16, body_timeout_secs=0.3) as port,
        connection(port) as (reader, writer),
    ):
        writer.write(chat_head(1_000) + CHAT)
        status, _, body = await asyncio.wait_for(read_response(reader), 3)
        rest = await closed_within(reader, 3)

    assert status == 413
    assert orjson.loads(body)["error"]["message"] == "the request body is larger than 16 bytes"
    assert rest == b"", "nothing after the 413: the connection closes"


async def test_a_connection_answered_before_its_body_ended_is_kept_for_the_next_request() -> None:
    """After an early 413 the rest of the body still arrives; the keep-alive time starts when it has,
    not at the body deadline (which passes right after it here)."""
    async with (
        serving(max_body_bytes=16, body_timeout_secs=0.5, keepalive_timeout_secs=5) as port,
        connection(port) as (reader, writer),
    ):
        writer.write(chat_head(len(CHAT)) + CHAT[:20])
        status = (await asyncio.wait_for(read_response(reader), 3))[0]
        await asyncio.sleep(0.4)  # the client's pace: the rest of the body comes late, within time
        writer.write(CHAT[20:])
        await asyncio.sleep(0.3)  # the next request comes after the body deadline has passed
        writer.write(HEALTHZ)
        after = (await asyncio.wait_for(read_response(reader), 3))[0]

    assert status == 413
    assert after == 200
