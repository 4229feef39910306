"""`detour serve` serves the gRPC API next to HTTP (`--grpc-port`, default 8082; 0: off), in the same
process and on the same router, and drains it on SIGTERM with the HTTP ports."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.ingress.grpc._generated import gateway_pb2, gateway_pb2_grpc
from sidecar.simulate import SimulatedProvider
from tests.support.processes import detour_process, free_port
from tests.support.running import config_text, limits_alternative_rule, provider

CHAT = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]})


def routes(tmp_path: Path, base_url: str) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(config_text({"p": provider("openai", base_url)}, [limits_alternative_rule(["p"])]))
    return str(path)


async def test_serve_answers_grpc_and_http_from_one_router_and_drains_on_sigterm(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    async with SimulatedProvider("openai") as sim:
        args = ("serve", "--config", routes(tmp_path, sim.base_url), "--port", str(http_port))
        async with detour_process(*args, "--grpc-port", str(grpc_port)) as detour:
            await detour.line_containing(f"gRPC API on 127.0.0.1:{grpc_port}")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="detour.v1.Gateway"), timeout=5
                )
                answer = await gateway_pb2_grpc.GatewayStub(channel).Proxy(
                    gateway_pb2.ProxyRequest(dialect="openai", body=CHAT),
                    metadata=(("authorization", "Bearer sk-client"),),
                    timeout=5,
                )
            detour.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(detour.process.wait(), 10)

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert (answer.status, answer.served.provider) == (200, "p")
    assert orjson.loads(answer.body)["choices"][0]["message"]["content"]
    assert len(sim.requests) == 1
    assert code == 0


async def test_the_connection_cap_applies_to_the_grpc_port_too(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    own = [("grpc.use_local_subchannel_pool", 1)]  # each channel its own connection
    check = health_pb2.HealthCheckRequest()
    async with SimulatedProvider("openai") as sim:
        args = ("serve", "--config", routes(tmp_path, sim.base_url), "--port", str(http_port))
        async with detour_process(*args, "--grpc-port", str(grpc_port), "--max-connections", "1") as detour:
            await detour.line_containing(f"gRPC API on 127.0.0.1:{grpc_port}")
            address = f"127.0.0.1:{grpc_port}"
            async with grpc.aio.insecure_channel(address, options=own) as first:
                held = await health_pb2_grpc.HealthStub(first).Check(check, timeout=5)
                async with grpc.aio.insecure_channel(address, options=own) as second:
                    try:
                        await health_pb2_grpc.HealthStub(second).Check(check, timeout=5)
                        refused = None
                    except grpc.aio.AioRpcError as exc:
                        refused = exc.code()

    assert held.status == health_pb2.HealthCheckResponse.SERVING
    assert refused is grpc.StatusCode.UNAVAILABLE


async def test_grpc_port_zero_turns_it_off(tmp_path: Path) -> None:
    async with SimulatedProvider("openai") as sim:
        config = routes(tmp_path, sim.base_url)
        port = free_port()
        async with detour_process(
            "serve", "--config", config, "--port", str(port), "--grpc-port", "0"
        ) as detour:
            await detour.line_containing("detour serving on")

    assert not any("gRPC" in line for line in detour.log)


async def test_a_taken_grpc_port_is_a_clear_error_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        grpc_port = taken.getsockname()[1]
        async with SimulatedProvider("openai") as sim:
            config = routes(tmp_path, sim.base_url)
            args = ("serve", "--config", config, "--port", str(free_port()), "--grpc-port", str(grpc_port))
            async with detour_process(*args) as detour:
                line = await detour.line_containing("could not listen for gRPC")
                code = await asyncio.wait_for(detour.process.wait(), 10)

    assert f"127.0.0.1:{grpc_port}" in line
    assert code == 1
