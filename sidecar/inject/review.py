"""One `admission.k8s.io/v1` AdmissionReview in, its response out — pure, so every case is a table test.

The injector never blocks a pod: whatever it cannot understand (not JSON, not a review, not a pod,
a pod shaped wrongly) is *allowed unpatched*, with a warning the API server passes on to whoever
created the pod, and a line for the injector's log. The response echoes the request's `uid` when
there is one; without a uid the API server treats the answer as a webhook failure, which the
chart's `failurePolicy: Ignore` also turns into "admit unchanged".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.inject.patch import Injection, plan_injection
from sidecar.inject.settings import InjectorSettings

API_VERSION = "admission.k8s.io/v1"


@dataclass(frozen=True)
class Reviewed:
    """The response body, plus what the injector should log about this review."""

    body: dict[str, Any]
    log_line: str
    problem: bool  # True: logged as a warning (a review the injector could not use)


def review(raw: bytes, settings: InjectorSettings, *, image: str, version: str) -> Reviewed:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _allowed_unpatched("", "the request body is not JSON")
    request = document.get("request") if isinstance(document, dict) else None
    if not isinstance(request, dict):
        return _allowed_unpatched("", "not an AdmissionReview: no 'request' object")
    uid = request.get("uid")
    uid = uid if isinstance(uid, str) else ""
    if not uid:
        return _allowed_unpatched("", "the AdmissionReview has no request.uid")
    kind = request.get("kind")
    if not isinstance(kind, dict) or (kind.get("group"), kind.get("kind")) != ("", "Pod"):
        return _allowed_unpatched(uid, f"not a Pod review (kind {_short(kind)})")
    if request.get("operation", "CREATE") != "CREATE":
        return _allowed_unpatched(uid, f"operation {_short(request.get('operation'))} is not CREATE")
    pod = request.get("object")
    where = _pod_name(request, pod)
    if not isinstance(pod, dict):
        return _allowed_unpatched(uid, f"{where}: request.object is not a pod")
    try:
        injection = plan_injection(pod, settings, image=image, version=version)
    except ValueError as exc:
        return _allowed_unpatched(uid, f"{where}: {exc}")
    return _respond(uid, where, injection)


def _respond(uid: str, where: str, injection: Injection) -> Reviewed:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if injection.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(injection.patch)).decode("ascii")
    if injection.warnings:
        response["warnings"] = injection.warnings
    line = f"{where}: not injected ({injection.skipped})" if injection.skipped else f"{where}: injected"
    if injection.warnings:
        line += "; " + "; ".join(injection.warnings)
    return Reviewed(_envelope(response), line, problem=False)


def _allowed_unpatched(uid: str, reason: str) -> Reviewed:
    response = {"uid": uid, "allowed": True, "warnings": [f"detour: pod not injected: {reason}"[:240]]}
    return Reviewed(_envelope(response), f"review not understood, allowed unpatched: {reason}", problem=True)


def _envelope(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _pod_name(request: dict[str, Any], pod: object) -> str:
    """`namespace/name` for the log; a Deployment's pods have only a generateName at admission."""
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    name = request.get("name") or metadata.get("name") or f"{metadata.get('generateName') or ''}*"
    namespace = request.get("namespace") or metadata.get("namespace") or "?"
    return _short(f"{namespace}/{name}")


def _short(value: object, limit: int = 120) -> str:
    """Input from the API server goes into logs and warnings: keep it one bounded line."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
