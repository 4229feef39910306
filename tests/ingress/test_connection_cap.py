"""Open connections are capped per port (docs/operations.md, "Limits"): one beyond the cap is answered
503 at once and closed, in a body both SDKs parse, and the connections already open do not notice.
The real server on 127.0.0.1; raw sockets, so the test knows which connections the server holds."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import orjson

from sidecar.app import Sidecar
from sidecar.sockets import bind_socket
from tests.ingress.wire import connection, port_of, read_response
from tests.support.running import serve_sidecar

HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
LAST = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"


async def served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes = HEALTHZ) -> int:
    """Send one request on a connection the server has accepted and answer its status."""
    writer.write(request)
    return (await asyncio.wait_for(read_response(reader), 3))[0]


async def test_a_connection_beyond_the_cap_gets_503_at_once_and_the_others_are_unaffected() -> None:
    async with serve_sidecar(Sidecar(), max_connections=2) as url:
        port = port_of(url)
        async with connection(port) as (reader_a, writer_a), connection(port) as (reader_b, writer_b):
            # Answered requests prove the server holds both connections (an accept is asynchronous).
            assert await served(reader_a, writer_a) == 200
            assert await served(reader_b, writer_b) == 200
            async with connection(port) as (reader_c, _):
                # Not a byte sent: the answer comes before the request.
                status, headers, body = await asyncio.wait_for(read_response(reader_c), 3)
                rest = await asyncio.wait_for(reader_c.read(), 3)
            async with httpx.AsyncClient(base_url=url, timeout=3) as client:
                refused = await client.get("/healthz")
            still = [await served(reader_a, writer_a), await served(reader_b, writer_b)]
            # One of the two leaves (the server closes it after answering): room for a new one.
            assert await served(reader_a, writer_a, LAST) == 200
            assert await asyncio.wait_for(reader_a.read(), 3) == b""
            async with connection(port) as (reader_d, writer_d):
                after = await served(reader_d, writer_d)

    assert status == 503
    assert headers["retry-after"] == "1"
    assert headers["connection"] == "close"
    error = orjson.loads(body)
    assert error["type"] == "error", "the Anthropic shape…"
    assert error["error"]["code"] == "too_many_connections", "…and the OpenAI shape at once"
    assert rest == b"", "closed right after the 503"
    assert refused.status_code == 503, "a real client reads the 503, not a reset"
    assert refused.headers["retry-after"] == "1"
    assert still == [200, 200]
    assert after == 200


async def test_each_port_has_its_own_cap_so_a_full_api_port_does_not_starve_the_probes() -> None:
    probe_sock = bind_socket("127.0.0.1", 0)
    probe_port = probe_sock.getsockname()[1]
    async with serve_sidecar(Sidecar(), max_connections=1, probe_sock=probe_sock) as url:
        async with contextlib.AsyncExitStack() as stack:
            reader, writer = await stack.enter_async_context(connection(port_of(url)))
            assert await served(reader, writer) == 200  # the API port is full
            async with connection(port_of(url)) as (over_reader, _):
                over = (await asyncio.wait_for(read_response(over_reader), 3))[0]
            async with httpx.AsyncClient(timeout=3) as client:
                probe = await client.get(f"http://127.0.0.1:{probe_port}/healthz")

    assert over == 503
    assert probe.status_code == 200
