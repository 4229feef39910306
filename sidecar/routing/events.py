"""What the router tells the rest of the process: rate limits, failovers, finished requests.

Observers (telemetry, the demo's live view, later gRPC `Admin.WatchEvents`) subscribe through the
`Observer` protocol; with none registered, emitting costs one empty loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sidecar.providers.ratelimit_headers import WaitSource


@dataclass(frozen=True, slots=True)
class RateLimited:
    provider_id: str
    model: str
    wait_s: float  # the wait actually applied (0: skipped for this request only)
    source: WaitSource
    reason: str  # "rate_limit" | "quota"
    whole_provider: bool


@dataclass(frozen=True, slots=True)
class FailedOver:
    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    # rate_limit, quota, server_error, timeout, connect_error, stream_error or context_length
    reason: str


@dataclass(frozen=True, slots=True)
class Served:
    provider_id: str
    model: str
    role: str
    attempts: int
    first_provider: str  # the candidate tried first; differs from provider_id after a failover


class Observer(Protocol):
    def on_rate_limited(self, event: RateLimited) -> None: ...

    def on_failed_over(self, event: FailedOver) -> None: ...

    def on_served(self, event: Served) -> None: ...
