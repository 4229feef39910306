"""What `/admin/state` (and later gRPC `Admin.GetState`) shows: the config in force, the limits and
the circuits. Credentials are never part of it — only ids, models, reasons and times.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sidecar.routing.circuits import CircuitBreakers
from sidecar.routing.limits import RateLimitTable
from sidecar.routing.table import Clock, RouteTable
from sidecar.routing.tally import Counters


def describe_state(
    table: RouteTable | None,
    limits: RateLimitTable,
    clock: Clock,
    circuits: CircuitBreakers | None = None,
    counters: Counters | None = None,
) -> dict[str, Any]:
    now, wall = clock.monotonic(), clock.wall()
    limited: list[dict[str, Any]] = [
        {
            "provider": key.provider_id,
            "model": key.model,  # null: the whole provider (quota)
            "reason": entry.reason.value,
            "wait_source": entry.source.value,
            "wait_s": round(entry.wait_s, 3),
            "remaining_s": round(entry.expires_at - now, 3),
            "expires_at": wall + (entry.expires_at - now),
            "consecutive_429s": entry.consecutive,
        }
        for key, entry in limits.active(now)
    ]
    limited.sort(key=lambda item: item["remaining_s"])
    config: dict[str, Any] | None = None
    if table is not None:
        config = {
            "version": table.version,
            "source": table.loaded.source,
            "providers": sorted(table.providers),
            "rules": [rule.name for rule in table.rules],
        }
    return {
        "config": config,
        "rate_limited": limited,
        "rate_limit_table": {"size": len(limits), "capacity": limits.capacity, "evictions": limits.evictions},
        "circuits": _circuits(circuits, now) if circuits is not None else [],
        "counters": dataclasses.asdict(counters) if counters is not None else {},
    }


def _circuits(circuits: CircuitBreakers, now: float) -> list[dict[str, Any]]:
    described = []
    for (provider_id, model), circuit in circuits.items():
        reopens = circuits.reopens_at(provider_id, model)
        described.append(
            {
                "provider": provider_id,
                "model": model,
                "state": circuit.state.value,
                "consecutive_failures": circuit.consecutive_failures,
                "retry_in_s": round(max(reopens - now, 0.0), 3) if reopens is not None else None,
            }
        )
    return described
