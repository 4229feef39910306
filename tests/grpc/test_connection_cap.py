"""The gRPC port caps its open connections as the HTTP ports do (docs/operations.md, "Limits"): a
connection beyond the cap is closed before its handshake, the call on it fails UNAVAILABLE, and
the connections already open do not notice; a connection that never completes its handshake is
closed after the header timeout, so silent connections cannot hold the slots. The real `grpc.aio`
server on 127.0.0.1; each channel its own connection (channels to one address share one by default)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.app import Sidecar
from sidecar.ingress.grpc.server import build_grpc_server
from sidecar.ingress.http_protocol import ConnectionLimits
from tests.grpc.support import CALL_TIMEOUT_S, rpc_error

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 50)]
CHECK = health_pb2.HealthCheckRequest()


def channel(address: str) -> Any:
    return grpc.aio.insecure_channel(address, options=OWN_CONNECTION)


async def checked(health: health_pb2_grpc.HealthStub, *, wait: bool = False) -> int:
    answer = await health.Check(CHECK, wait_for_ready=wait, timeout=CALL_TIMEOUT_S)
    return int(answer.status)


async def test_a_connection_beyond_the_cap_is_refused_and_the_open_ones_are_unaffected() -> None:
    sidecar = Sidecar()
    server = build_grpc_server(sidecar, "127.0.0.1", 0, limits=ConnectionLimits(max_connections=2))
    await server.start()
    try:
        async with channel(server.address) as first, channel(server.address) as second:
            a, b = health_pb2_grpc.HealthStub(first), health_pb2_grpc.HealthStub(second)
            opened = [await checked(a, wait=True), await checked(b, wait=True)]
            async with channel(server.address) as third:
                third_health = health_pb2_grpc.HealthStub(third)
                refused = await rpc_error(third_health.Check(CHECK, timeout=CALL_TIMEOUT_S))
            still = [await checked(a), await checked(b)]
            await first.close()  # room for one more
            async with channel(server.address) as fourth:
                after = await checked(health_pb2_grpc.HealthStub(fourth), wait=True)
    finally:
        await server.stop(0)
        await sidecar.aclose()

    answered = health_pb2.HealthCheckResponse.NOT_SERVING  # no config yet: an answer all the same
    assert opened == [answered, answered]
    assert refused.code() is grpc.StatusCode.UNAVAILABLE, "closed before its handshake: a retryable code"
    assert still == [answered, answered]
    assert after == answered


async def test_a_connection_that_never_completes_its_handshake_is_closed_after_the_header_timeout() -> None:
    sidecar = Sidecar()
    limits = ConnectionLimits(max_connections=1, header_timeout_secs=0.3)
    server = build_grpc_server(sidecar, "127.0.0.1", 0, limits=limits)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # sends nothing
        opened = time.monotonic()
        async with channel(server.address) as blocked:
            refused = await rpc_error(
                health_pb2_grpc.HealthStub(blocked).Check(CHECK, timeout=CALL_TIMEOUT_S)
            )
        rest = await asyncio.wait_for(reader.read(), CALL_TIMEOUT_S)  # until the server closes it
        held_s = time.monotonic() - opened
        writer.close()
        async with channel(server.address) as after:
            answered = await checked(health_pb2_grpc.HealthStub(after), wait=True)
    finally:
        await server.stop(0)
        await sidecar.aclose()

    assert refused.code() is grpc.StatusCode.UNAVAILABLE, "the silent connection holds the only slot"
    assert b"handshake timeout" in rest, "grpc says why (an HTTP/2 GOAWAY), then closes"
    assert 0.2 <= held_s < 3, "closed at the header timeout, not grpc's two minutes"
    assert answered == health_pb2.HealthCheckResponse.NOT_SERVING
