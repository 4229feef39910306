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
from sidecar.ingress.http_protocol import ConnectionLimits
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
    **options: Any,
) -> AsyncIterator[RunningSidecar]:
    """The sidecar of `text` served on a free port; `options` as for `serve_sidecar`."""
    loaded = load_config_text(text, source="test", env=env or {})
    observer = RecordingObserver()
    sidecar = Sidecar(
        loaded,
        clock=clock.as_clock() if clock else None,
        rng=random.Random(seed),
        observers=[observer],
    )
    async with serve_sidecar(sidecar, **options) as url:
        yield RunningSidecar(sidecar, url, observer)


class ServedURL(str):
    """The API's URL (a plain `str` to every caller), with the admin listener's when there is one."""

    admin_url: str | None = None


@contextlib.asynccontextmanager
async def serve_sidecar(
    sidecar: Sidecar, *, admin_port: int | None = None, **options: Any
) -> AsyncIterator[ServedURL]:
    """Serve an already-built sidecar (any config, or none yet) on a free port; yields its URL.

    `options` go to `sidecar.app.serve`: the limits (`max_body_bytes`, `shutdown_grace_secs`, and
    a connection's — `max_header_bytes`, `header_timeout_secs`, `body_timeout_secs`,
    `keepalive_timeout_secs`, `max_connections` — gathered into its `ConnectionLimits`) and extra
    listeners (`probe_sock`, `admin_sock`: closed here as well). `admin_port` (0: any free one)
    binds the admin listener on 127.0.0.1, as `detour serve --admin-port` does; its URL is the
    yielded URL's `admin_url`."""
    per_connection = {name: options.pop(name) for name in ConnectionLimits.__slots__ if name in options}
    if per_connection:
        if "limits" in options:
            raise TypeError("give the connection limits one way: as keywords or as `limits`")
        options["limits"] = ConnectionLimits(**per_connection)
    sock = bind_socket("127.0.0.1", 0)
    url = ServedURL(f"http://127.0.0.1:{sock.getsockname()[1]}")
    if admin_port is not None:
        options["admin_sock"] = bind_socket("127.0.0.1", admin_port)
    if options.get("admin_sock") is not None:
        url.admin_url = f"http://127.0.0.1:{options['admin_sock'].getsockname()[1]}"
    task = asyncio.create_task(serve(sidecar, sock, **options))
    try:
        yield url
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sidecar.aclose()
        sock.close()
        for extra in (options.get("probe_sock"), options.get("admin_sock")):
            if extra is not None:
                extra.close()


def pair_config(primary: Any, backup: Any, **strategy: Any) -> str:
    """Two simulated providers as `primary` → `backup` under one limits-alternative rule."""
    providers = {
        "primary": provider(primary.dialect, primary.base_url),
        "backup": provider(backup.dialect, backup.base_url),
    }
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"], **strategy)])
