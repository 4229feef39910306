"""Detour speaks HTTP/1.1 only: a request asking to upgrade (`curl --http2 http://…` sends
`Upgrade: h2c`) is answered in HTTP/1.1 with its body intact, as RFC 9110 §7.8 allows, and the
connection goes on. Raw sockets on 127.0.0.1, so the bytes and their split are the test's own."""

from __future__ import annotations

import asyncio

import orjson

from sidecar.simulate import SimulatedProvider
from tests.ingress.wire import connection, port_of, read_response
from tests.support.running import config_text, limits_alternative_rule, provider, running_sidecar

BODY = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]})
UPGRADE = (
    "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer sk\r\n"
    "connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
    "content-type: application/json\r\n"
)


async def test_an_h2c_upgrade_is_ignored_and_its_body_read_then_the_connection_goes_on() -> None:
    async with SimulatedProvider("openai") as sim:
        text = config_text({"p": provider("openai", sim.base_url)}, [limits_alternative_rule(["p"])])
        async with running_sidecar(text) as running, connection(port_of(running.url)) as (reader, writer):
            request = f"{UPGRADE}content-length: {len(BODY)}\r\n\r\n".encode() + BODY
            split = request.index(b"\r\n\r\n") + 10  # two writes: the body may arrive in two reads
            writer.write(request[:split])
            await writer.drain()
            writer.write(request[split:] + b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            status, headers, body = await asyncio.wait_for(read_response(reader), 5)
            next_status, _, _ = await asyncio.wait_for(read_response(reader), 5)

    assert status == 200, body
    assert orjson.loads(body)["choices"][0]["message"]["content"]
    assert "upgrade" not in headers, "not switched: HTTP/1.1 goes on"
    assert next_status == 200, "the request after it on the same connection is served"


async def test_an_upgrade_with_a_chunked_body_is_refused_in_the_shape_both_sdks_parse() -> None:
    async with SimulatedProvider("openai") as sim:
        text = config_text({"p": provider("openai", sim.base_url)}, [limits_alternative_rule(["p"])])
        async with running_sidecar(text) as running, connection(port_of(running.url)) as (reader, writer):
            chunked = f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n"
            writer.write(f"{UPGRADE}transfer-encoding: chunked\r\n\r\n".encode() + chunked)
            await writer.drain()
            status, headers, body = await asyncio.wait_for(read_response(reader), 5)
            tail = await asyncio.wait_for(reader.read(), 5)

    assert status == 400
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "unsupported_upgrade"
    assert tail == b"", "nothing else: the connection closes"
    assert sim.requests == [], "nothing was sent upstream"
