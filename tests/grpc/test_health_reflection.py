"""The standard health service follows the config (NOT_SERVING before the first one, SERVING from
the moment it is applied, NOT_SERVING when stopping), and server reflection lists every service the
way `grpcurl list` asks for them."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sidecar.config.loader import load_config_text
from tests.grpc.support import CALL_TIMEOUT_S, grpc_detour, pair, rpc_error
from tests.support.memory_transport import Upstreams, openai_at

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CONFIG = pair(openai_at("primary"), openai_at("backup"))


async def _check(detour: Any, service: str) -> int:
    response = await detour.health.Check(
        health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT_S
    )
    return int(response.status)


async def test_health_is_not_serving_before_the_first_config_and_serving_once_it_is_applied() -> None:
    async with grpc_detour(None, Upstreams()) as detour:
        before = {
            service: await _check(detour, service) for service in ("", "detour.v1.Gateway", "detour.v1.Admin")
        }
        watch = detour.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            first = await watch.read()
            detour.sidecar.apply(load_config_text(CONFIG, source="test", env={}))
            second = await watch.read()
        after = {service: await _check(detour, service) for service in ("", "detour.v1.Gateway")}
        listed = await detour.health.List(health_pb2.HealthListRequest(), timeout=CALL_TIMEOUT_S)
        watch.cancel()

    assert before == {"": NOT_SERVING, "detour.v1.Gateway": NOT_SERVING, "detour.v1.Admin": SERVING}
    assert (first.status, second.status) == (NOT_SERVING, SERVING)
    assert after == {"": SERVING, "detour.v1.Gateway": SERVING}
    assert {name: status.status for name, status in listed.statuses.items()} == {
        "": SERVING, "detour.v1.Gateway": SERVING, "detour.v1.Admin": SERVING,
    }  # fmt: skip


async def test_an_unknown_service_is_not_found_and_watched_as_unknown() -> None:
    async with grpc_detour(CONFIG, Upstreams()) as detour:
        failed = await rpc_error(detour.health.Check(health_pb2.HealthCheckRequest(service="nope")))
        watch = detour.health.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=CALL_TIMEOUT_S)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            unknown = await watch.read()
        watch.cancel()

    assert failed.code() is grpc.StatusCode.NOT_FOUND
    assert unknown.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


async def test_stopping_turns_every_service_not_serving_and_ends_the_watches() -> None:
    async with grpc_detour(CONFIG, Upstreams()) as detour:
        watch = detour.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            serving = await watch.read()
            detour.server.health.stop()
            stopping = await watch.read()
            end = await watch.read()
        stopped = await _check(detour, "detour.v1.Admin")

    assert (serving.status, stopping.status, stopped) == (SERVING, NOT_SERVING, NOT_SERVING)
    assert end is grpc.aio.EOF
    assert await watch.code() is grpc.StatusCode.OK


async def test_a_server_without_the_admin_service_does_not_report_it() -> None:
    async with grpc_detour(CONFIG, Upstreams(), admin=False) as detour:
        failed = await rpc_error(
            detour.health.Check(health_pb2.HealthCheckRequest(service="detour.v1.Admin"))
        )
        listed = await _reflect(detour.channel, reflection_pb2.ServerReflectionRequest(list_services=""))

    assert failed.code() is grpc.StatusCode.NOT_FOUND
    assert "detour.v1.Admin" not in {service.name for service in listed.list_services_response.service}


async def _reflect(channel: Any, request: Any) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(timeout=CALL_TIMEOUT_S)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        await call.write(request)
        response = await call.read()
        await call.done_writing()
    return response


async def test_reflection_lists_the_services_and_describes_their_methods() -> None:
    async with grpc_detour(CONFIG, Upstreams()) as detour:
        listed = await _reflect(detour.channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        described = await _reflect(
            detour.channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="detour.v1.Gateway")
        )

    assert {service.name for service in listed.list_services_response.service} == {
        "detour.v1.Gateway",
        "detour.v1.Admin",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    gateway = next(file for file in files if file.name == "detour/v1/gateway.proto")
    [service] = gateway.service
    assert [method.name for method in service.method] == ["Proxy", "ProxyStream", "Chat", "ChatStream"]
    assert [method.server_streaming for method in service.method] == [False, True, False, True]
