"""The gRPC port caps its open connections as the HTTP ports do (docs/operations.md, "Limits"): a
connection beyond the cap is closed before its handshake, the call on it fails UNAVAILABLE (which
gRPC clients retry), and the connections already open do not notice. The real `grpc.aio` server
on 127.0.0.1; each channel its own connection (channels to one address share one by default)."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.app import Sidecar
from sidecar.ingress.grpc.server import build_grpc_server
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
    server = build_grpc_server(sidecar, "127.0.0.1", 0, max_connections=2)
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
