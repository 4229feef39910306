"""`detour serve` on SIGTERM (docs/operations.md, "Shutdown"): it stops accepting at once, lets the
stream in flight finish within `--shutdown-grace-secs` and exits 0; a stream that outlives the grace
is cut and the process exits on time. A real process, a slow streaming upstream, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from sidecar.simulate import SimulatedProvider, SlowStream
from tests.support.processes import LoggedProcess, detour_process, free_port
from tests.support.running import config_text, limits_alternative_rule, provider

STORY = "Once upon a time there was a sidecar that finished what it had started."
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "a story"}]}
AUTH = {"authorization": "Bearer sk"}
DONE = "data: [DONE]"


@contextlib.asynccontextmanager
async def detour_serving(
    tmp_path: pathlib.Path, upstream: SimulatedProvider, *flags: str
) -> AsyncIterator[tuple[LoggedProcess, int]]:
    config = tmp_path / "routes.yaml"
    config.write_text(
        config_text({"p": provider("openai", upstream.base_url)}, [limits_alternative_rule(["p"])])
    )
    port = free_port()
    async with detour_process("serve", "--config", str(config), "--port", str(port), *flags) as detour:
        await detour.line_containing("detour serving on")
        yield detour, port


async def data_lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line


def story_of(lines: list[str]) -> str:
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in lines if line != DONE]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_sigterm_lets_the_stream_in_flight_finish_refuses_new_connections_and_exits_0(
    tmp_path: pathlib.Path,
) -> None:
    async with SimulatedProvider("openai", reply_text=STORY) as upstream:
        upstream.script(SlowStream(between_events_s=0.1))  # about 1.5 s of stream
        async with detour_serving(tmp_path, upstream, "--shutdown-grace-secs", "10") as (detour, port):
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=10) as client,
                client.stream("POST", "/v1/chat/completions", json=CHAT) as response,
            ):
                lines = data_lines(response)
                received = [await anext(lines)]  # the stream is under way
                detour.process.send_signal(signal.SIGTERM)
                draining = await detour.line_containing("API port closed to new connections")
                new_connection_refused = await refused(port)
                still_running = detour.process.returncode is None
                received += [line async for line in lines]
            exit_code = await asyncio.wait_for(detour.process.wait(), 10)

    assert "1 request(s) in flight get up to 10 s" in draining
    assert new_connection_refused
    assert still_running, "the process waited for the stream"
    assert received[-1] == DONE, "the stream ended as a whole stream does"
    assert story_of(received) == STORY, "and nothing of it was lost"
    assert exit_code == 0


async def test_a_stream_that_outlives_the_grace_is_cut_and_the_process_exits_on_time(
    tmp_path: pathlib.Path,
) -> None:
    grace_s = 1.0
    async with SimulatedProvider("openai", reply_text=STORY) as upstream:
        upstream.script(SlowStream(stall_after_events=2, stall_s=30))  # two events, then a long stall
        async with detour_serving(tmp_path, upstream, "--shutdown-grace-secs", str(grace_s)) as (
            detour,
            port,
        ):
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=10) as client,
                client.stream("POST", "/v1/chat/completions", json=CHAT) as response,
            ):
                lines = data_lines(response)
                received = [await anext(lines)]
                detour.process.send_signal(signal.SIGTERM)
                signalled = time.perf_counter()
                with pytest.raises(httpx.RemoteProtocolError):  # the chunked body ends unfinished
                    received += [line async for line in lines]
                cut_after = time.perf_counter() - signalled
            exit_code = await asyncio.wait_for(detour.process.wait(), 10)
            exited_after = time.perf_counter() - signalled
            logged = await detour.line_containing("shutdown grace of 1 s over")

    assert DONE not in received
    assert grace_s - 0.1 <= cut_after < grace_s + 1, f"cut {cut_after:.2f} s after SIGTERM"
    assert exited_after < grace_s + 1.5, f"exited {exited_after:.2f} s after SIGTERM"
    assert exit_code == 0
    assert "closing 1 connection(s)" in logged
