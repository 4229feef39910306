"""The request head (request line plus headers) is capped where its bytes arrive: over the cap, the
client gets 431 at once and the connection closes, and nobody else waits (docs/architecture.md §8).
Raw sockets on 127.0.0.1 against the real server, so every byte of the head is the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from sidecar.app import Sidecar
from sidecar.ingress.http_protocol import DEFAULT_MAX_HEADER_BYTES
from sidecar.simulate import SimulatedProvider
from tests.ingress.wire import connection, head, port_of, read_response
from tests.support.running import (
    config_text,
    limits_alternative_rule,
    provider,
    running_sidecar,
    serve_sidecar,
)

MiB = 1024 * 1024


@contextlib.asynccontextmanager
async def serving(max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> AsyncIterator[int]:
    """A sidecar with no config (its probes answer) on a free port, with the given cap; its port."""
    async with serve_sidecar(Sidecar(), max_header_bytes=max_header_bytes) as url:
        yield port_of(url)


async def test_a_1_mib_header_gets_431_at_once_while_another_request_is_served() -> None:
    async with serving() as port, connection(port) as (reader, writer):
        started = time.perf_counter()
        answered = asyncio.create_task(read_response(reader))
        big = head(MiB)
        writer.write(big[: MiB // 2])  # half the head sent, more to come
        await writer.drain()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            meanwhile = await client.get("/healthz")
        with contextlib.suppress(ConnectionError):  # the server may stop reading once it answered
            writer.write(big[MiB // 2 :])
            await writer.drain()
        status, headers, body = await asyncio.wait_for(answered, 5)
        elapsed = time.perf_counter() - started
        closed = await asyncio.wait_for(reader.read(), 5)

    assert meanwhile.status_code == 200
    assert status == 431
    assert headers["connection"] == "close"
    assert closed == b"", "the connection is closed after the 431"
    error = orjson.loads(body)
    assert error["error"]["code"] == "request_header_fields_too_large"
    assert error["type"] == "error", "the body is an Anthropic error as well as an OpenAI one"
    assert elapsed < 0.5, f"the 431 took {elapsed:.3f} s"


@pytest.mark.parametrize(
    ("size", "status"),
    [
        (DEFAULT_MAX_HEADER_BYTES - 1, 200),
        (DEFAULT_MAX_HEADER_BYTES, 200),
        (DEFAULT_MAX_HEADER_BYTES + 1, 431),
    ],
)
async def test_the_default_cap_is_64_kib_of_request_line_and_headers(size: int, status: int) -> None:
    async with serving() as port, connection(port) as (reader, writer):
        writer.write(head(size))
        await writer.drain()
        answer = await asyncio.wait_for(read_response(reader), 5)

    assert answer[0] == status


async def test_every_request_on_a_kept_alive_connection_is_capped_anew() -> None:
    async with serving(max_header_bytes=4096) as port, connection(port) as (reader, writer):
        statuses = []
        for size in (4000, 4096, 4097):
            writer.write(head(size))
            await writer.drain()
            statuses.append((await asyncio.wait_for(read_response(reader), 5))[0])
        closed = await asyncio.wait_for(reader.read(), 5)

    assert statuses == [200, 200, 431]
    assert closed == b""


async def test_a_body_read_with_a_head_just_under_the_cap_reaches_the_provider_intact() -> None:
    """The read that crosses the cap holds the rest of the head and the start of the body."""
    async with SimulatedProvider("openai") as sim:
        text = config_text({"p": provider("openai", sim.base_url)}, [limits_alternative_rule(["p"])])
        async with running_sidecar(text) as running:
            port = port_of(running.url)
            content = "x" * (300 * 1024)
            body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
            extra = (
                "authorization: Bearer sk\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n"
            )
            request = head(
                DEFAULT_MAX_HEADER_BYTES - 10, method="POST", path="/v1/chat/completions", extra=extra
            )
            async with connection(port) as (reader, writer):
                writer.write(request + body)  # one write: head and body arrive in the same reads
                await writer.drain()
                status, headers, _ = await asyncio.wait_for(read_response(reader), 10)

    assert status == 200
    assert headers["x-detour-provider"] == "p"
    assert sim.requests[0].body["messages"][0]["content"] == content


async def test_a_pipelined_head_over_the_cap_lets_the_answer_before_it_finish_then_closes() -> None:
    async with serving(max_header_bytes=4096) as port, connection(port) as (reader, writer):
        writer.write(head(200) + head(8192))  # the second request follows before the first is answered
        await writer.drain()
        first = await asyncio.wait_for(read_response(reader), 5)
        rest = await asyncio.wait_for(reader.read(), 5)

    assert first[0] == 200
    assert rest == b"", "no 431 inside or after the answer in flight: the connection just closes"


async def test_bytes_that_are_not_http_still_get_400_not_431() -> None:
    async with serving(max_header_bytes=4096) as port, connection(port) as (reader, writer):
        writer.write(b"\x01" * 8192)
        await writer.drain()
        status, _, body = await asyncio.wait_for(read_response(reader), 5)

    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "invalid_http_request", "the shape both SDKs parse"
