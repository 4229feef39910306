"""`GET /v1/models`: the model names the loaded rules can serve, in either API's list shape.

Rules match by pattern, so the list is what the config names explicitly: the keys of every
provider's `model_map` and every provider's fixed `model`, kept when some rule matches them.
"""

from __future__ import annotations

from typing import Any

from sidecar.routing.strategies import match_rule
from sidecar.routing.table import RouteTable


def servable_models(table: RouteTable | None) -> list[str]:
    if table is None:
        return []
    names: set[str] = set()
    for provider in table.providers.values():
        names.update(provider.model_map)
        if provider.model is not None:
            names.add(provider.model)
    return sorted(name for name in names if match_rule(table.rules, name) is not None)


def list_models(table: RouteTable | None, *, anthropic_shape: bool) -> dict[str, Any]:
    names = servable_models(table)
    if anthropic_shape:
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
            for name in names
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "detour"} for name in names],
    }
