"""What `/admin/state` (and gRPC `Admin.GetState`) shows: the config in force, the limits and
the circuits. Credentials are never part of it — only ids, models, reasons and times.

Its size is bounded whatever the clients send (docs/architecture.md §8): each list shows at most
`LISTED` entries, the soonest to expire first, next to the total it was cut from.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import Any

from sidecar.routing.circuits import CircuitBreakers
from sidecar.routing.limits import RateLimitTable
from sidecar.routing.table import Clock, RouteTable
from sidecar.routing.tally import Counters

LISTED = 100


def describe_state(
    table: RouteTable | None,
    limits: RateLimitTable,
    clock: Clock,
    circuits: CircuitBreakers | None = None,
    counters: Counters | None = None,
) -> dict[str, Any]:
    now, wall = clock.monotonic(), clock.wall()
    active = list(limits.active(now))
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
            # Only a limit another sidecar saw says so (docs/scale-out.md); memory mode is unchanged.
            **({"learned_from": "peer"} if entry.peer else {}),
        }
        for key, entry in heapq.nsmallest(LISTED, active, key=lambda item: item[1].expires_at)
    ]
    config: dict[str, Any] | None = None
    if table is not None:
        config = {
            "version": table.version,
            "source": table.loaded.source,
            "providers": sorted(table.providers),
            "rules": [rule.name for rule in table.rules],
        }
    totals = dataclasses.asdict(counters) if counters is not None else {}
    state: dict[str, Any] = {
        "config": config,
        "rate_limited": limited,
        "rate_limited_total": len(active),
        "rate_limit_table": {"size": len(limits), "capacity": limits.capacity, "evictions": limits.evictions},
        "circuits": [],
        "circuits_total": 0,
        "counters": totals,
    }
    if circuits is not None:
        state["circuits"] = _circuits(circuits, now)
        state["circuits_total"] = len(circuits)
        state["circuit_table"] = {
            "size": len(circuits),
            "capacity": circuits.capacity,
            "evictions": circuits.evictions,
        }
        totals["circuit_evictions"] = circuits.evictions
    return state


def _circuits(circuits: CircuitBreakers, now: float) -> list[dict[str, Any]]:
    """The first `LISTED` in the table's own order: open and half-open first, the soonest to reopen
    first, then closed ones."""
    described = []
    for (provider_id, model), circuit in itertools.islice(circuits.items(), LISTED):
        reopens = circuits.reopens_at(provider_id, model)
        described.append(
            {
                "provider": provider_id,
                "model": model,
                "state": circuit.state.value,
                "consecutive_failures": circuit.consecutive_failures,
                "retry_in_s": round(max(reopens - now, 0.0), 3) if reopens is not None else None,
                # Opened by another sidecar's failures (docs/scale-out.md), as limits say it.
                **({"learned_from": "peer"} if circuit.peer else {}),
            }
        )
    return described
