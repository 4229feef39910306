"""The floor forwarders (`bench/forwarder.py`, stacks `floor-*` of `bench/variants.py`) pass requests
and streams through unchanged — the benchmark compares Detour with them, so a floor that broke
answers would make Detour look slow for nothing. Each is started as the harness starts it."""

from __future__ import annotations

import http.client
import pathlib

import pytest

from bench.procs import HOST, detour, upstream
from bench.scenarios import OPENAI, OPENAI_STREAM
from bench.variants import command_for

FLOORS = ["floor-aiohttp", "floor-httpx-aiohttp", "floor-httpx-transport"]


def posted(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("POST", "/v1/chat/completions", body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("stack", FLOORS)
def test_a_floor_forwards_answers_and_streams_unchanged(stack: str, tmp_path: pathlib.Path) -> None:
    with upstream(events=5) as up, detour(up.url, tmp_path, command=command_for(stack), name=stack) as floor:
        plain = posted(floor.port, OPENAI.body, dict(OPENAI.headers))
        stream = posted(floor.port, OPENAI_STREAM.body, dict(OPENAI_STREAM.headers))
        direct = posted(up.port, OPENAI_STREAM.body, dict(OPENAI_STREAM.headers))

    assert plain[0] == 200
    assert b'"choices"' in plain[1]
    assert stream == direct, "the stream's bytes as the upstream sent them"
    assert stream[1].count(b"data: ") == 5
