"""`/admin/state` and the router's events as `detour.v1.Admin` messages (docs/grpc.md, "Admin").
Pure: dicts and event records in, messages out. Like /admin/state they never hold a credential:
only ids, models, reasons, times and counts."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.ingress.grpc._generated import admin_pb2 as pb
from sidecar.routing.events import ConfigApplied, ConfigRejected, FailedOver, LimitCleared, RateLimited

AdminEvent = RateLimited | FailedOver | ConfigApplied | ConfigRejected | LimitCleared


def state_message(state: dict[str, Any]) -> pb.State:
    """`Router.describe_state()` plus its `reload` entry, the document /admin/state serves."""
    message = pb.State(
        rate_limited_total=state.get("rate_limited_total", 0), circuits_total=state.get("circuits_total", 0)
    )
    config = state.get("config")
    if config is not None:
        message.config.CopyFrom(
            pb.ConfigInfo(
                version=config["version"],
                source=config["source"],
                providers=config["providers"],
                rules=config["rules"],
            )
        )
    for limit in state.get("rate_limited", ()):
        message.rate_limited.append(
            pb.Limit(
                provider=limit["provider"],
                model=limit["model"] or "",
                reason=limit["reason"],
                wait_source=limit["wait_source"],
                wait_s=limit["wait_s"],
                remaining_s=limit["remaining_s"],
                expires_at=timestamp(limit["expires_at"]),
                consecutive_429s=limit["consecutive_429s"],
            )
        )
    for circuit in state.get("circuits", ()):
        described = pb.Circuit(
            provider=circuit["provider"],
            model=circuit["model"],
            state=circuit["state"],
            consecutive_failures=circuit["consecutive_failures"],
        )
        if circuit["retry_in_s"] is not None:
            described.retry_in_s = circuit["retry_in_s"]
        message.circuits.append(described)
    for name, value in state.get("counters", {}).items():
        message.counters[name] = int(value)
    for field in ("rate_limit_table", "circuit_table"):
        table = state.get(field)
        if table is not None:
            getattr(message, field).CopyFrom(
                pb.TableInfo(size=table["size"], capacity=table["capacity"], evictions=table["evictions"])
            )
    reload = state.get("reload")
    if reload is not None:
        message.reload.CopyFrom(_reload(reload))
    return message


def _reload(reload: dict[str, Any]) -> pb.ReloadInfo:
    info = pb.ReloadInfo(
        source=reload["source"],
        version=reload["version"] or "",
        last_result=reload["last_result"],
        last_problems=reload["last_problems"],
        applied=reload["applied"],
        rejected=reload["rejected"],
        failed=reload["failed"],
        last_failure=reload["last_failure"] or "",
    )
    if reload["last_change_at"] is not None:
        info.last_change_at.CopyFrom(timestamp(reload["last_change_at"]))
    return info


def event_message(at: float, event: AdminEvent, dropped: int = 0) -> pb.Event:
    """One event as `WatchEvents` sends it; `dropped`: events the watcher missed just before it."""
    message = pb.Event(at=timestamp(at), dropped=dropped)
    if isinstance(event, RateLimited):
        message.rate_limited.CopyFrom(
            pb.RateLimitedEvent(
                provider=event.provider_id,
                model=event.model,
                wait_s=event.wait_s,
                wait_source=event.source.value,
                reason=event.reason.value,
            )
        )
    elif isinstance(event, FailedOver):
        message.failover.CopyFrom(
            pb.FailoverEvent(
                from_provider=event.from_provider,
                from_model=event.from_model,
                to_provider=event.to_provider,
                to_model=event.to_model,
                reason=event.reason,
            )
        )
    elif isinstance(event, ConfigApplied):
        message.config_applied.CopyFrom(pb.ConfigAppliedEvent(version=event.version, source=event.source))
    elif isinstance(event, ConfigRejected):
        message.config_rejected.CopyFrom(
            pb.ConfigRejectedEvent(
                source=event.source,
                result=event.result,
                problems=event.problems,
                active_version=event.active_version or "",
            )
        )
    else:
        message.limit_cleared.CopyFrom(
            pb.LimitClearedEvent(provider=event.provider_id, model=event.model or "", cleared=event.cleared)
        )
    return message


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    whole = int(seconds // 1)
    stamp.seconds = whole
    stamp.nanos = min(round((seconds - whole) * 1e9), 999_999_999)
    return stamp
