"""`python -m bench.machine_floor` measures what the machine adds with a do-nothing proxy; checked
here without wrk: the proxy answers each request after one upstream round trip, and burns the CPU
time it was given on each (lower bounds only: a slow machine cannot fail them)."""

from __future__ import annotations

import time

from bench.instructions import post_chat_completions
from bench.machine_floor import floor_proxy
from bench.procs import upstream

REQUESTS = 10


def seconds_for(port: int) -> float:
    started = time.perf_counter()
    post_chat_completions(port, REQUESTS, 1)  # raises unless every answer is a 200
    return time.perf_counter() - started


def test_each_request_waits_for_its_upstream_round_trip() -> None:
    with upstream(latency_ms=20) as up, floor_proxy(up.port, 0) as port:
        assert seconds_for(port) >= REQUESTS * 0.020


def test_each_request_burns_the_cpu_time_it_was_given() -> None:
    with upstream() as up, floor_proxy(up.port, 20_000) as port:
        assert seconds_for(port) >= REQUESTS * 0.020
