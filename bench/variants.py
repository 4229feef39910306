"""The stacks `python -m bench --stack NAME` can run in Detour's place, each with the same config and
the same `serve --config … --port …` arguments: Detour as shipped, Detour with one part swapped
(`bench.stacks`), or the routing-free floor forwarder (`bench.forwarder`).
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
