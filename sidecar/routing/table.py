"""The immutable routing snapshot a request is routed with: rules in order and provider clients.

A reload builds a new `RouteTable` and swaps one reference; a request reads the reference once, so
in-flight requests finish on the snapshot they started with (docs/architecture.md §1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from sidecar.config.loader import LoadedConfig
from sidecar.config.models import ProviderConfig, Rule
from sidecar.providers.client import ProviderClient

# How early a `sleep` may return: an event loop fires a timer up to one tick before `monotonic()`
# reaches its deadline (uvloop's timers tick in milliseconds).
DEFAULT_RESOLUTION_S = 0.001


@dataclass(frozen=True)
class RouteTable:
    loaded: LoadedConfig
    rules: list[Rule]
    providers: Mapping[str, ProviderConfig]
    clients: Mapping[str, ProviderClient]

    @property
    def version(self) -> str:
        return self.loaded.version


@dataclass(frozen=True)
class Clock:
    """Monotonic time for expiries, wall time for HTTP dates and for showing expiries to people,
    and the one way the router waits (retry backoff, `max_wait_for_retry_after_secs`)."""

    monotonic: Callable[[], float] = field(default=time.monotonic)
    wall: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    # After a `sleep` until an expiry, an expiry this close to `monotonic()` has passed.
    resolution: float = DEFAULT_RESOLUTION_S
