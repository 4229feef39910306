"""Start the real sidecar (the same `Sidecar` + uvicorn wiring as `detour serve`) on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from sidecar.app import Sidecar, serve
from sidecar.config.loader import load_config_text
from sidecar.routing.events import FailedOver, RateLimited, Served
from sidecar.routing.table import Clock
from sidecar.sockets import bind_socket


class FakeClock:
    """Time that moves only when a test says so; wall and monotonic move together."""

    def __init__(self, start_wall: float = 1_750_000_000.0) -> None:
        self.offset = 0.0
        self.slept: list[float] = []
        self._start_wall = start_wall

    def monotonic(self) -> float:
        return 1000.0 + self.offset

    def wall(self) -> float:
        return self._start_wall + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    async def sleep(self, seconds: float) -> None:
        """The router's waits pass instantly: time jumps, and the loop gets one turn."""
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def as_clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, wall=self.wall, sleep=self.sleep)


class RecordingObserver:
    def __init__(self) -> None:
        self.rate_limited: list[RateLimited] = []
        self.failovers: list[FailedOver] = []
        self.served: list[Served] = []

    def on_rate_limited(self, event: RateLimited) -> None:
        self.rate_limited.append(event)

    def on_failed_over(self, event: FailedOver) -> None:
        self.failovers.append(event)

    def on_served(self, event: Served) -> None:
        self.served.append(event)


@dataclass
class RunningSidecar:
    sidecar: Sidecar
    url: str
    observer: RecordingObserver

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"


def provider(kind: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "base_url": base_url, **extra}


def config_text(
    providers: Mapping[str, Mapping[str, Any]], rules: Sequence[Mapping[str, Any]], **routing: Any
) -> str:
    document = {"providers": dict(providers), "routing": {"rules": list(rules), **routing}}
    return yaml.safe_dump(document, sort_keys=False)


def limits_alternative_rule(
    primaries: Sequence[str],
    alternatives: Sequence[str] = (),
    *,
    fallbacks: Sequence[str] = (),
    pattern: str | None = None,
    **strategy: Any,
) -> dict[str, Any]:
    matcher = {"model_pattern": pattern} if pattern else {"always": True}
    return {
        "name": "limits",
        "priority": 10,
        "matcher": matcher,
        "strategy": {
            "type": "limits-alternative",
            "primary_providers": list(primaries),
            "alternative_providers": list(alternatives),
            **strategy,
        },
        "fallbacks": list(fallbacks),
    }


@contextlib.asynccontextmanager
async def running_sidecar(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    clock: FakeClock | None = None,
    seed: int = 7,
) -> AsyncIterator[RunningSidecar]:
    loaded = load_config_text(text, source="test", env=env or {})
    observer = RecordingObserver()
    sidecar = Sidecar(
        loaded,
        clock=clock.as_clock() if clock else None,
        rng=random.Random(seed),
        observers=[observer],
    )
    async with serve_sidecar(sidecar) as url:
        yield RunningSidecar(sidecar, url, observer)


@contextlib.asynccontextmanager
async def serve_sidecar(sidecar: Sidecar, **options: Any) -> AsyncIterator[str]:
    """Serve an already-built sidecar (any config, or none yet) on a free port; yields its URL.
    `options` go to `sidecar.app.serve` (e.g. `max_header_bytes`)."""
    sock = bind_socket("127.0.0.1", 0)
    task = asyncio.create_task(serve(sidecar, sock, **options))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sidecar.aclose()
        sock.close()


def pair_config(primary: Any, backup: Any, **strategy: Any) -> str:
    """Two simulated providers as `primary` → `backup` under one limits-alternative rule."""
    providers = {
        "primary": provider(primary.dialect, primary.base_url),
        "backup": provider(backup.dialect, backup.base_url),
    }
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"], **strategy)])
