"""The stacks `python -m bench --stack NAME` can run in Detour's place, each with the same config and
the same `serve --config … --port …` arguments: Detour as shipped, Detour with one part swapped
(`bench.stacks`), or the routing-free floor forwarder (`bench.forwarder`). Every one is started
with `--grpc-port 0` unless a run needs gRPC (`bench.procs.detour`); the floor serves no gRPC at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

STACKS: dict[str, Sequence[str] | None] = {
    "detour": None,
    "quiet-httpx": ["-m", "bench.stacks", "quiet-httpx"],
    "httpx-default": ["-m", "bench.stacks", "httpx-default"],
    "aiohttp": ["-m", "bench.stacks", "aiohttp"],
    "aiohttp-quiet": ["-m", "bench.stacks", "aiohttp-quiet"],
    "aiohttp-gc": ["-m", "bench.stacks", "aiohttp-gc"],
    "floor-aiohttp": ["-m", "bench.forwarder", "aiohttp"],
    "floor-httpx-aiohttp": ["-m", "bench.forwarder", "httpx-aiohttp"],
}


def command_for(stack: str) -> Sequence[str] | None:
    if stack not in STACKS:
        raise SystemExit(f"unknown stack {stack!r}; known: {', '.join(STACKS)}")
    command = STACKS[stack]
    return None if command is None else [sys.executable, *command]


def serves_grpc(stack: str) -> bool:
    """Whether the stack has Detour's gRPC API (the floor forwarder has none)."""
    command = STACKS.get(stack)
    return command is None or "bench.forwarder" not in command
