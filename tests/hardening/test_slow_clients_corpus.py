"""Slow and greedy clients against a real `detour serve` with the connection limits of the
hardening issue (`--header-timeout-secs`, `--body-timeout-secs`, `--keepalive-timeout-secs`,
`--max-connections`), set small so every deadline passes within a second: a client that never
finishes its head or body gets 408 and is closed at the deadline, an idle one is closed, the
connection over the cap gets 503 with Retry-After, and none of it delays anybody else."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from sidecar.simulate import SimulatedProvider
from tests.hardening.serving import Serving, detour_serve
from tests.hardening.wire import RawResponse, assert_error_shape, read_response, request_bytes
from tests.support.running import config_text, limits_alternative_rule, provider

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEAD_S, BODY_S, KEEPALIVE_S = 1.0, 0.5, 0.5
SLACK_S = 0.6  # how late past its deadline a rejection may come on a busy 2-core machine
CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}'
AUTH = (("authorization", "Bearer sk-slow"), ("content-type", "application/json"))
HALF_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthoriz"


class Slow:
    """A process with short deadlines and the one provider it routes to."""

    def __init__(self, serving: Serving, sim: SimulatedProvider) -> None:
        self.serving = serving
        self.sim = sim


@contextlib.asynccontextmanager
async def serving_with(directory: pathlib.Path, *flags: str) -> AsyncIterator[Slow]:
    async with SimulatedProvider("openai") as sim:
        text = config_text({"p": provider("openai", sim.base_url)}, [limits_alternative_rule(["p"])])
        async with detour_serve(text, directory, *flags) as serving:
            yield Slow(serving, sim)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Slow]:
    flags = (
        *("--header-timeout-secs", str(HEAD_S)),
        *("--body-timeout-secs", str(BODY_S)),
        *("--keepalive-timeout-secs", str(KEEPALIVE_S)),
    )
    async with serving_with(tmp_path_factory.mktemp("slow"), *flags) as running:
        yield running


@contextlib.asynccontextmanager
async def connected(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answered_then_closed(reader: asyncio.StreamReader, within_s: float) -> tuple[RawResponse, float]:
    """The rejection, the end of the stream after it, and when the answer came (perf_counter)."""
    async with asyncio.timeout(within_s):
        response = await read_response(reader)
        at = time.perf_counter()
        response.rest = await reader.read()
    return response, at


def assert_rejected(response: RawResponse, status: int) -> None:
    assert response.status == status, response.head
    assert response.header("connection") == b"close", response.head
    assert response.rest == b"", "the connection is closed after the rejection"
    assert_error_shape(response.body, "both")


async def served(url: str) -> float:
    """A well-formed request on a new connection; its latency."""
    began = time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(url + "/v1/chat/completions", content=CHAT, headers=dict(AUTH))
    assert response.status_code == 200, response.text
    return time.perf_counter() - began


async def test_half_a_head_then_nothing_gets_408_at_the_head_deadline(slow: Slow) -> None:
    async with connected(slow.serving.port) as (reader, writer):
        opened = time.perf_counter()
        writer.write(HALF_HEAD)
        meanwhile = await served(slow.serving.url)
        response, at = await answered_then_closed(reader, HEAD_S + 3)

    assert_rejected(response, 408)
    assert HEAD_S - 0.1 <= at - opened <= HEAD_S + SLACK_S, f"408 after {at - opened:.3f} s"
    assert meanwhile < 1.0


async def test_a_head_trickling_in_is_not_kept_alive_by_its_progress(slow: Slow) -> None:
    async with connected(slow.serving.port) as (reader, writer):
        opened = time.perf_counter()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in HALF_HEAD * 10:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)  # the pace of the attack, not a wait for an event

        trickling = asyncio.ensure_future(trickle())
        try:
            response, at = await answered_then_closed(reader, HEAD_S + 3)
        finally:
            trickling.cancel()

    assert_rejected(response, 408)
    assert at - opened <= HEAD_S + SLACK_S, f"408 after {at - opened:.3f} s"


async def test_an_idle_connection_is_closed_silently_at_the_head_deadline(slow: Slow) -> None:
    async with connected(slow.serving.port) as (reader, _):
        opened = time.perf_counter()
        async with asyncio.timeout(HEAD_S + 3):
            data = await reader.read()
        closed_after = time.perf_counter() - opened

    assert data == b"", "nothing was asked, so nothing is answered"
    assert HEAD_S - 0.1 <= closed_after <= HEAD_S + SLACK_S, f"closed after {closed_after:.3f} s"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_body_that_never_arrives_gets_408_and_the_upstream_sees_nothing(
    slow: Slow, path: str
) -> None:
    before = len(slow.sim.requests)
    head = request_bytes("POST", path, headers=AUTH, content_length=False)
    head = head[:-2] + b"content-length: 1000000000\r\n\r\n"
    async with connected(slow.serving.port) as (reader, writer):
        writer.write(head + CHAT[:40])
        sent = time.perf_counter()
        response, at = await answered_then_closed(reader, BODY_S + 3)

    assert_rejected(response, 408)
    assert BODY_S - 0.1 <= at - sent <= BODY_S + SLACK_S, f"408 after {at - sent:.3f} s"
    assert len(slow.sim.requests) == before, "the upstream saw nothing"


async def test_an_idle_kept_alive_connection_is_closed_at_the_keepalive_deadline(slow: Slow) -> None:
    async with connected(slow.serving.port) as (reader, writer):
        writer.write(request_bytes("POST", "/v1/chat/completions", CHAT, headers=AUTH))
        answer = await asyncio.wait_for(read_response(reader), 5)
        answered = time.perf_counter()
        async with asyncio.timeout(KEEPALIVE_S + 3):
            rest = await reader.read()
        idle_for = time.perf_counter() - answered

    assert answer.status == 200
    assert answer.header("connection") != b"close", "the connection was kept alive"
    assert rest == b""
    assert KEEPALIVE_S - 0.1 <= idle_for <= KEEPALIVE_S + SLACK_S, f"closed after {idle_for:.3f} s idle"


async def test_500_slow_loris_connections_do_not_delay_a_normal_request(slow: Slow) -> None:
    connections = []
    try:
        for _ in range(500):
            reader, writer = await asyncio.open_connection("127.0.0.1", slow.serving.port)
            writer.write(HALF_HEAD)
            connections.append((reader, writer))
        latency = await served(slow.serving.url)
        async with asyncio.timeout(HEAD_S + 5):
            endings = await asyncio.gather(*(reader.read() for reader, _ in connections))
    finally:
        for _, writer in connections:
            writer.close()

    assert latency < 1.0, f"a normal request took {latency:.3f} s beside 500 slow clients"
    assert all(ending.startswith(b"HTTP/1.1 408 ") for ending in endings), "every slow client got its 408"


async def test_the_connection_over_the_cap_gets_503_and_the_others_keep_working(
    tmp_path: pathlib.Path,
) -> None:
    cap = 8
    async with serving_with(tmp_path, "--max-connections", str(cap)) as running:
        port = running.serving.port
        request = request_bytes("POST", "/v1/chat/completions", CHAT, headers=AUTH)
        kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap)]
        try:
            for reader, writer in kept:
                writer.write(request)
                assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
            async with connected(port) as (reader, writer):
                writer.write(request)
                refused, _ = await answered_then_closed(reader, 5)
            again = []
            for reader, writer in kept:
                writer.write(request)
                again.append((await asyncio.wait_for(read_response(reader), 5)).status)
            kept.pop()[1].close()
            latency = await _served_once_a_slot_is_free(running.serving.url)
        finally:
            for _, writer in kept:
                writer.close()

    assert_rejected(refused, 503)
    assert refused.header("retry-after") is not None, refused.head
    assert again == [200] * cap, "the connections within the cap keep working"
    assert latency < 1.0


async def _served_once_a_slot_is_free(url: str) -> float:
    """A closed connection frees its slot once the server has seen the close (no event tells the
    client when): retry a refused request for up to 2 s."""
    deadline = time.perf_counter() + 2
    while True:
        try:
            return await served(url)
        except (AssertionError, httpx.HTTPError):
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.05)
