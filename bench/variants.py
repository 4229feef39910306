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
    "workers2": ["-m", "bench.stacks", "workers2"],
    "no-gc": ["-m", "bench.stacks", "no-gc"],
    "floor-aiohttp": ["-m", "bench.forwarder", "aiohttp"],
    "floor-httpx-aiohttp": ["-m", "bench.forwarder", "httpx-aiohttp"],
    "floor-httpx-transport": ["-m", "bench.forwarder", "httpx-transport"],
}


# Suffixes a stack name can carry in `--compare` (`detour+otel`, `detour+otel+sample10`): `otel` makes
# it export telemetry to the benchmark's OTLP receiver, the others add environment variables.
MODIFIERS: dict[str, dict[str, str]] = {
    "otel": {},
    "sample10": {"DETOUR_TRACES_SUCCESS_RATIO": "0.1"},
    "sample0": {"DETOUR_TRACES_SUCCESS_RATIO": "0"},
    "sampleoff": {"OTEL_TRACES_SAMPLER": "always_off"},
    "nofreeze": {"DETOUR_GC_FREEZE": "0"},
    "notraces": {"OTEL_TRACES_EXPORTER": "none"},
    "nometrics": {"OTEL_METRICS_EXPORTER": "none"},
    "batch128": {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128"},  # the SDK's default is 512
    "switch5": {"DETOUR_SWITCH_INTERVAL_MS": "5"},  # Python's default
    "switch02": {"DETOUR_SWITCH_INTERVAL_MS": "0.2"},
    "switch05": {"DETOUR_SWITCH_INTERVAL_MS": "0.5"},
    "gc700": {"DETOUR_GC_THRESHOLD": "0"},  # Python's own threshold (700 up to 3.13; Detour's: 3000)
    "gc10k": {"DETOUR_GC_THRESHOLD": "10000"},
}


def split_stack(spec: str) -> tuple[str, set[str], dict[str, str]]:
    """`base+mod+…` → the base stack, its modifiers, and the environment they add."""
    base, *mods = spec.split("+")
    env: dict[str, str] = {}
    for mod in mods:
        if mod not in MODIFIERS:
            raise SystemExit(f"unknown stack modifier {mod!r}; known: {', '.join(MODIFIERS)}")
        env |= MODIFIERS[mod]
    return base, set(mods), env


def command_for(stack: str) -> Sequence[str] | None:
    stack = split_stack(stack)[0]
    if stack not in STACKS:
        raise SystemExit(f"unknown stack {stack!r}; known: {', '.join(STACKS)}")
    command = STACKS[stack]
    return None if command is None else [sys.executable, *command]


def serves_grpc(stack: str) -> bool:
    """Whether the stack has Detour's gRPC API (the floor forwarder has none)."""
    command = STACKS.get(split_stack(stack)[0])
    return command is None or "bench.forwarder" not in command
