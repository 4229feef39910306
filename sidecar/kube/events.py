"""Kubernetes Events on the ConfigMap, so `kubectl describe configmap` shows what became of it.

Normal `ConfigApplied` with the version, or Warning `InvalidRoutingConfig` naming the problems; the
`involvedObject` carries kind, name, namespace and uid. Posting is best effort: an API server that
is down must not stop the sidecar from serving the last good config.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

from sidecar.kube.configmap import ConfigMapRef

log = logging.getLogger("detour.kube")

MAX_MESSAGE = 1024


def event_body(
    ref: ConfigMapRef, *, uid: str | None, reason: str, message: str, warning: bool, now: datetime.datetime
) -> dict[str, Any]:
    timestamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    instance = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or "detour"
    involved: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": ref.name,
        "namespace": ref.namespace,
    }
    if uid:
        involved["uid"] = uid
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref.name}.detour.", "namespace": ref.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": "detour"},
        "reportingComponent": "detour",
        "reportingInstance": instance,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


def post_event(core_api: Any, ref: ConfigMapRef, body: dict[str, Any]) -> None:
    """Blocking; run it in a thread. Failures are logged, never raised."""
    try:
        core_api.create_namespaced_event(ref.namespace, body, _request_timeout=(5, 10))
    except Exception as exc:
        log.warning(
            "could not post event %s on configmap %s: %s", body.get("reason"), ref, type(exc).__name__
        )
