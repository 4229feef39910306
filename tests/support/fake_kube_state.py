"""The data behind the fake Kubernetes API server, with no I/O.

`FakeKubeAPI` (in `fake_kube`) speaks HTTP; this module holds what it serves: ConfigMaps under one
global, monotonically increasing resourceVersion (etcd's revision), a bounded history of watch events
that `compact()` can forget, the Events that clients POST, and the Kubernetes semantics that do not
need a socket — field selectors, resourceVersion rules, `Status` bodies. Kept apart so the server
module is only wire plumbing.
"""

from __future__ import annotations

import copy
import secrets
import string
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
START_RESOURCE_VERSION = 100
HISTORY_LIMIT = 1000


class KubeError(Exception):
    """An API error that the server renders as a `Status` body with this HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> JSON:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def not_found(kind: str, name: str) -> KubeError:
    return KubeError(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool, which the API server applies to `watch` and `allowWatchBookmarks`."""
    if value is None or value == "":
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise KubeError(400, "BadRequest", f'strconv.ParseBool: parsing "{value}": invalid syntax')


def parse_resource_version(value: str | None) -> int | None:
    """None for unset (and for "0", which means "any version" and starts from the current state)."""
    if value is None or value in ("", "0"):
        return None
    try:
        return int(value)
    except ValueError:
        raise KubeError(400, "BadRequest", f'invalid resource version "{value}"') from None


@dataclass(frozen=True)
class Requirement:
    field: str
    value: str
    equal: bool


FieldSelector = tuple[Requirement, ...]
_SELECTABLE = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}


def parse_field_selector(text: str | None) -> FieldSelector:
    """`a=b,c!=d` (also `==`); only the fields the API server supports for ConfigMaps."""
    requirements: list[Requirement] = []
    for term in filter(None, (text or "").split(",")):
        op = next((op for op in ("!=", "==", "=") if op in term), None)
        if op is None:
            raise KubeError(400, "BadRequest", f'invalid field selector: "{term}"')
        field, value = term.split(op, 1)
        if field not in _SELECTABLE:
            raise KubeError(400, "BadRequest", f"field label not supported: {field}")
        requirements.append(Requirement(field, value, equal=op != "!="))
    return tuple(requirements)


def matches(obj: JSON, namespace: str | None, selector: FieldSelector) -> bool:
    meta = obj["metadata"]
    if namespace is not None and meta.get("namespace") != namespace:
        return False
    for req in selector:
        section, key = _SELECTABLE[req.field]
        if (obj[section].get(key) == req.value) != req.equal:
            return False
    return True


@dataclass(frozen=True)
class Change:
    """One entry of the watch history: the object as it was after change number `rv`."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    object: JSON

    def event(self) -> JSON:
        return {"type": self.type, "object": self.object}


class KubeState:
    """ConfigMaps and Events; every write bumps the global resourceVersion."""

    def __init__(self, on_change: Callable[[Change], None]) -> None:
        self._on_change = on_change
        self.reset()

    def reset(self) -> None:
        self.rv = START_RESOURCE_VERSION
        self.horizon = START_RESOURCE_VERSION  # watches from a version older than this get 410 Gone
        self.configmaps: dict[tuple[str, str], JSON] = {}
        self.history: deque[Change] = deque(maxlen=HISTORY_LIMIT)
        self.events: list[JSON] = []
        self._events_by_key: dict[tuple[str, str, str], JSON] = {}

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, kind: str, obj: JSON) -> None:
        change = Change(self.rv, kind, copy.deepcopy(obj))
        if len(self.history) == self.history.maxlen:  # the oldest change is about to be forgotten
            self.horizon = self.history[0].rv
        self.history.append(change)
        self._on_change(change)

    # --- ConfigMaps -------------------------------------------------------------------------

    def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> JSON:
        current = self.configmaps.get((namespace, name))
        if current is None:
            obj: JSON = {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": self._bump(),
                    "creationTimestamp": now_rfc3339(),
                },
                "data": dict(data),
            }
            kind = "ADDED"
        else:
            obj = copy.deepcopy(current)
            obj["metadata"]["resourceVersion"] = self._bump()
            obj["data"] = dict(data)
            kind = "MODIFIED"
        self.configmaps[(namespace, name)] = obj
        self._record(kind, obj)
        return copy.deepcopy(obj)

    def delete_configmap(self, namespace: str, name: str) -> None:
        obj = self.configmaps.pop((namespace, name), None)
        if obj is None:
            raise not_found("configmaps", name)
        obj["metadata"]["resourceVersion"] = self._bump()  # DELETED carries the deletion's version
        self._record("DELETED", obj)

    def compact(self) -> None:
        self.history.clear()
        self.horizon = self.rv

    def get_configmap(self, namespace: str, name: str) -> JSON:
        obj = self.configmaps.get((namespace, name))
        if obj is None:
            raise not_found("configmaps", name)
        return copy.deepcopy(obj)

    def list_configmaps(self, namespace: str | None, selector: FieldSelector) -> list[JSON]:
        return [
            copy.deepcopy(obj)
            for key, obj in sorted(self.configmaps.items())
            if matches(obj, namespace, selector)
        ]

    def list_body(self, items: list[JSON]) -> JSON:
        return {
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    def check_list_version(self, rv: int | None, match: str | None) -> None:
        """List semantics: `Exact` needs the version in history; otherwise "not older than" it."""
        if rv is None:
            return
        if match == "Exact" and rv < self.horizon:
            raise KubeError(410, "Expired", f"too old resource version: {rv} ({self.horizon})")
        if rv > self.rv:
            raise KubeError(
                504,
                "Timeout",
                f"Too large resource version: {rv}, current: {self.rv}",
                {
                    "causes": [
                        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                    ],
                    "retryAfterSeconds": 1,
                },
            )

    def replay(self, since: int | None, namespace: str | None, selector: FieldSelector) -> list[JSON]:
        """The events a watch starting at `since` must send before live ones.

        Unset (or "0") starts from the current state as synthetic ADDED events, as the API server
        does; a version older than the compaction horizon raises 410 Gone (`Expired`).
        """
        if since is None:
            return [{"type": "ADDED", "object": obj} for obj in self.list_configmaps(namespace, selector)]
        if since < self.horizon:
            raise KubeError(410, "Expired", f"too old resource version: {since} ({self.horizon})")
        return [
            copy.deepcopy(c.event())
            for c in self.history
            if c.rv > since and matches(c.object, namespace, selector)
        ]

    # --- Events -----------------------------------------------------------------------------

    def create_event(self, api_version: str, namespace: str, body: JSON) -> JSON:
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise KubeError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise KubeError(
                    422,
                    "Invalid",
                    "Event is invalid: metadata.name: Required value: name or generateName is required",
                )
            suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        key = (api_version, namespace, meta["name"])
        if key in self._events_by_key:
            raise KubeError(
                409,
                "AlreadyExists",
                f'events "{meta["name"]}" already exists',
                {"name": meta["name"], "kind": "events"},
            )
        body["kind"], body["apiVersion"] = "Event", api_version
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            resourceVersion=self._bump(),
            creationTimestamp=now_rfc3339(),
        )
        self._events_by_key[key] = body
        self.events.append(body)
        return copy.deepcopy(body)

    def get_event(self, api_version: str, namespace: str, name: str) -> JSON:
        return copy.deepcopy(self._stored_event(api_version, namespace, name))

    def _stored_event(self, api_version: str, namespace: str, name: str) -> JSON:
        obj = self._events_by_key.get((api_version, namespace, name))
        if obj is None:
            raise not_found("events", name)
        return obj

    def list_events(self, api_version: str, namespace: str) -> JSON:
        kind = "EventList"
        items = [
            copy.deepcopy(e)
            for (v, ns, _), e in self._events_by_key.items()
            if v == api_version and ns == namespace
        ]
        return {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    def update_event(
        self, api_version: str, namespace: str, name: str, change: Any, *, replace: bool
    ) -> JSON:
        """PUT (`replace`) or PATCH: a JSON patch (a list of operations) or a merge / strategic merge
        patch (a dict; the same thing for an Event's plain fields). Edits the stored dict in place, so
        `FakeKubeAPI.events` shows the latest state (e.g. a bumped `count`)."""
        obj = self._stored_event(api_version, namespace, name)
        preserved = {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "creationTimestamp")}
        if replace:
            new = change
        elif isinstance(change, list):
            new = json_patch(obj, change)
        else:
            new = merge_patch(obj, change)
        obj.clear()
        obj.update(copy.deepcopy(new))
        obj["kind"], obj["apiVersion"] = "Event", api_version
        obj.setdefault("metadata", {}).update(preserved, resourceVersion=self._bump())
        return copy.deepcopy(obj)


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386 JSON merge patch (also right for a strategic merge patch of an Event's scalar fields)."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def json_patch(target: JSON, operations: list[JSON]) -> JSON:
    """RFC 6902 `add` / `replace` / `remove` / `test` on object paths (all an Event update needs)."""
    result = copy.deepcopy(target)
    for op in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if op["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            node.pop(last, None)
        elif op["op"] == "test" and node.get(last) != op["value"]:
            raise KubeError(422, "Invalid", f"the JSON patch test failed at {op['path']}")
    return result
