"""The upstream seam bounds a body read whole (docs/architecture.md §8): chunk by chunk, abandoned at
`max_body_bytes`, an `UpstreamStreamError` — over the real transport too."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from sidecar.config.models import DEFAULT_MAX_RESPONSE_BYTES, ProviderConfig, ProviderType
from sidecar.errors import UpstreamStreamError
from sidecar.providers.client import ClientHeaders, ProviderClient
from sidecar.providers.http import HttpxTransport, Timeouts, UpstreamRequest, UpstreamResponse


class CountingBody(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.consumed = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.consumed += 1
            yield part

    async def aclose(self) -> None:
        self.closed = True


def response(body: CountingBody, headers: dict[str, str] | None = None) -> UpstreamResponse:
    return UpstreamResponse(httpx.Response(200, headers=headers, stream=body))


def test_the_default_cap_is_32_mib() -> None:
    assert DEFAULT_MAX_RESPONSE_BYTES == 32 * 1024 * 1024
    assert ProviderConfig(type=ProviderType.OPENAI).max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
    assert UpstreamResponse(httpx.Response(200)).max_body_bytes == DEFAULT_MAX_RESPONSE_BYTES


async def test_a_body_within_the_cap_is_read_whole_and_the_response_closed() -> None:
    body = CountingBody([b"ab", b"cd", b"ef"])
    answer = response(body)
    answer.max_body_bytes = 6
    closed: list[bool] = []
    answer.when_closed(lambda: closed.append(True))

    assert await answer.read() == b"abcdef"
    assert closed == [True]


async def test_reading_stops_at_the_chunk_that_crosses_the_cap() -> None:
    body = CountingBody([b"x" * 10] * 100)
    answer = response(body)
    answer.max_body_bytes = 35
    closed: list[bool] = []
    answer.when_closed(lambda: closed.append(True))

    with pytest.raises(UpstreamStreamError, match=r"larger than max_response_bytes \(35 bytes\)"):
        await answer.read()

    assert body.consumed == 4
    assert body.closed, "the connection is released"
    assert closed == [True]


async def test_a_declared_content_length_over_the_cap_is_refused_before_reading() -> None:
    body = CountingBody([b"x" * 100])
    answer = response(body, {"content-length": "100"})
    answer.max_body_bytes = 99

    with pytest.raises(UpstreamStreamError, match="content-length is 100"):
        await answer.read()

    assert body.consumed == 0


@pytest.mark.parametrize("declared", ["1" * 5000, "²", "-1", ""])
async def test_a_content_length_that_is_not_a_small_number_does_not_break_the_read(declared: str) -> None:
    headers = [(b"content-length", declared.encode("latin-1"))] if declared else []
    answer = UpstreamResponse(httpx.Response(200, headers=headers, stream=CountingBody([b"{}"])))
    answer.max_body_bytes = 10

    if declared == "1" * 5000:
        with pytest.raises(UpstreamStreamError):
            await answer.read()
    else:
        assert await answer.read() == b"{}"


async def test_the_cap_counts_decoded_bytes() -> None:
    """A provider that compresses anyway: the cap bounds what would be buffered, not the wire."""
    compressed = gzip.compress(b"x" * 10_000)
    answer = response(CountingBody([compressed]), {"content-encoding": "gzip"})
    answer.max_body_bytes = 5_000

    with pytest.raises(UpstreamStreamError):
        await answer.read()


async def test_an_encoded_body_is_read_decoded_and_a_plain_one_as_it_came() -> None:
    text = b'{"id": "chatcmpl-1", "choices": []}'
    encoded = response(CountingBody([gzip.compress(text)]), {"content-encoding": "gzip"})
    plain = response(CountingBody([text[:10], text[10:]]))

    assert await encoded.read() == text
    assert await plain.read() == text


class IteratorBody(httpx.AsyncByteStream):
    """A stream whose iterator is an object, not an async generator (it has no `aclose`)."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = iter(parts)
        self.closed = False

    def __aiter__(self) -> IteratorBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self.parts)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


async def test_a_transport_stream_that_is_not_a_generator_is_read_and_capped_too() -> None:
    whole = UpstreamResponse(httpx.Response(200, stream=IteratorBody([b"ab", b"cd"])))
    capped_body = IteratorBody([b"x" * 10] * 5)
    capped = UpstreamResponse(httpx.Response(200, stream=capped_body))
    capped.max_body_bytes = 25

    assert await whole.read() == b"abcd"
    with pytest.raises(UpstreamStreamError):
        await capped.read()
    assert capped_body.closed, "the connection is released"
    assert next(capped_body.parts) == b"x" * 10, "reading stopped at the cap"


async def test_the_provider_client_sets_its_providers_cap_on_every_response() -> None:
    class Transport:
        async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
            return UpstreamResponse(httpx.Response(200, content=b"{}"))

        async def close(self) -> None:
            pass

    config = ProviderConfig(type=ProviderType.OPENAI, max_response_bytes=1234)
    sent = await ProviderClient("p", config, Transport()).send(b"{}", ClientHeaders(ProviderType.OPENAI))

    assert sent.max_body_bytes == 1234
    assert await sent.read() == b"{}"


async def test_over_the_real_transport_a_body_over_the_cap_is_abandoned_mid_way() -> None:
    total_chunks, chunk = 1024, b"x" * 64 * 1024  # 64 MiB, chunked
    written = 0
    finished = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        answer = web.StreamResponse(headers={"content-type": "application/json"})
        await answer.prepare(request)
        try:
            for _ in range(total_chunks):
                await answer.write(chunk)
                written += 1
        except (ConnectionError, OSError):
            pass
        finally:
            finished.set()
        return answer

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    transport = HttpxTransport()
    try:
        config = ProviderConfig(
            type=ProviderType.OPENAI, base_url=f"http://127.0.0.1:{port}/v1", max_response_bytes=1024 * 1024
        )
        client = ProviderClient("p", config, transport)
        answer = await client.send(b"{}", ClientHeaders(ProviderType.OPENAI))
        with pytest.raises(UpstreamStreamError, match="max_response_bytes"):
            await answer.read()
        async with asyncio.timeout(10):
            await finished.wait()
    finally:
        await transport.close()
        await runner.cleanup()

    assert written < total_chunks // 4, "the server could not send the whole body: it was not read"


_NAMES = st.sampled_from(
    [b"Content-Type", b"content-type", b"Retry-After", b"x-ratelimit-remaining-requests"]
)
_VALUES = st.binary(max_size=8).filter(lambda value: b"\r" not in value and b"\n" not in value)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_response_headers_read_as_httpx_reads_them(raw: list[tuple[bytes, bytes]]) -> None:
    """Lower-cased, repeats joined, and decoded as httpx decodes the set (UTF-8, else Latin-1)."""
    answer = UpstreamResponse(httpx.Response(200, headers=raw))

    assert answer.headers == dict(httpx.Headers(raw).items())
