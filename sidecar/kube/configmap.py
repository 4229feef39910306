"""Watching one ConfigMap with the official `kubernetes` client, in kopf's shape (docs/architecture.md §5).

LIST, then WATCH from the list's resourceVersion — both narrowed with
`fieldSelector=metadata.name=NAME`, so RBAC can be limited to that one object — with bookmarks and a
server-side timeout. The resourceVersion is updated from every event, bookmarks included; when a
watch ends by its timeout, the next one resumes from there. 410 Gone means "relist", not an error
(`ConfigMapGone`). A lost connection, or a watch the API server ends with any other error
(`WatchFailed`), reconnects with exponential backoff and jitter, capped at 5 s.

The official client is blocking, so the loop runs in a worker thread and hands each observed state
to the event loop through `deliver`. The client's own `Watch.stream` retries once after a 410 and
then raises; this loop is written around the raw API instead.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.errors import ConfigMapGone, WatchFailed

log = logging.getLogger("detour.kube")

GONE = 410


@dataclass(frozen=True, slots=True)
class ConfigMapRef:
    namespace: str
    name: str
    key: str = "routes.yaml"

    @classmethod
    def parse(cls, text: str, key: str = "routes.yaml") -> ConfigMapRef:
        namespace, slash, name = text.partition("/")
        if not slash or not namespace or not name or "/" in name:
            raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name, key)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ConfigMapState:
    """What the watcher saw: the config text, or why there is none (deleted, key missing)."""

    ref: ConfigMapRef
    text: str | None
    resource_version: str
    uid: str | None
    problem: str | None = None  # "deleted" or "missing key ..." when text is None


@dataclass
class Backoff:
    """Exponential reconnect delays with full jitter, capped (docs/architecture.md §5: at most 5 s)."""

    first_s: float = 0.2
    cap_s: float = 5.0
    _attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.first_s * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


class ConfigMapWatcher:
    def __init__(
        self,
        ref: ConfigMapRef,
        core_api: Any,  # kubernetes.client.CoreV1Api
        deliver: Callable[[ConfigMapState], None],
        *,
        watch_timeout_s: int = 240,
    ) -> None:
        self.ref = ref
        self._api = core_api
        self._deliver = deliver
        self._watch_timeout_s = watch_timeout_s
        self._backoff = Backoff()
        self._stop = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Ends the loop without waiting for the open watch's timeout. Called from the event loop,
        so it must not block: closing the response would wait for the reader thread's lock, while
        shutting the socket down only wakes that reader up."""
        self._stop.set()
        with self._lock:
            response = self._response
        connection = getattr(response, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        """The list → watch loop; returns when `stop` is called."""
        from kubernetes.client.exceptions import ApiException

        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
                self._backoff.reset()
            except ConfigMapGone:
                log.info("configmap %s: resourceVersion expired, relisting", self.ref)
                resource_version = None
            except ApiException as exc:
                if exc.status == GONE:
                    resource_version = None
                    continue
                self._pause(exc)
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._pause(exc)

    def _pause(self, exc: BaseException) -> None:
        delay = self._backoff.next_delay()
        log.warning(
            "configmap %s: API server unreachable (%s); retrying in %.2f s", self.ref, _brief(exc), delay
        )
        self._stop.wait(delay)

    def _list(self) -> str:
        listing = self._api.list_namespaced_config_map(
            self.ref.namespace,
            field_selector=f"metadata.name={self.ref.name}",
            _preload_content=False,
            _request_timeout=(5, 30),
        )
        try:
            payload = orjson.loads(listing.data)
        finally:
            listing.release_conn()
        resource_version = str(payload.get("metadata", {}).get("resourceVersion", ""))
        items = payload.get("items") or []
        if items:
            self._deliver(self._state(items[0]))
        else:
            self._deliver(ConfigMapState(self.ref, None, resource_version, None, problem="not found"))
        return resource_version

    def _watch(self, resource_version: str) -> str:
        response = self._api.list_namespaced_config_map(
            self.ref.namespace,
            field_selector=f"metadata.name={self.ref.name}",
            resource_version=resource_version,
            watch=True,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _preload_content=False,
            _request_timeout=(5, self._watch_timeout_s + 10),
        )
        with self._lock:
            self._response = response
        try:
            for event in _events(response):
                if self._stop.is_set():
                    break
                resource_version = self._handle(event, resource_version)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return resource_version

    def _handle(self, event: dict[str, Any], resource_version: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == GONE:
                raise ConfigMapGone()
            raise WatchFailed(str(obj.get("message", obj)))
        new_version = str(obj.get("metadata", {}).get("resourceVersion") or resource_version)
        if kind in ("ADDED", "MODIFIED"):
            self._deliver(self._state(obj))
        elif kind == "DELETED":
            uid = obj.get("metadata", {}).get("uid")
            self._deliver(ConfigMapState(self.ref, None, new_version, uid, problem="deleted"))
        return new_version  # BOOKMARK too: it only moves the resourceVersion on

    def _state(self, obj: dict[str, Any]) -> ConfigMapState:
        metadata = obj.get("metadata", {})
        resource_version = str(metadata.get("resourceVersion", ""))
        uid = metadata.get("uid")
        text = (obj.get("data") or {}).get(self.ref.key)
        if text is None:
            return ConfigMapState(
                self.ref, None, resource_version, uid, problem=f"missing key '{self.ref.key}'"
            )
        return ConfigMapState(self.ref, text, resource_version, uid)


def _events(response: Any) -> Iterator[dict[str, Any]]:
    from kubernetes.watch.watch import iter_resp_lines

    for line in iter_resp_lines(response):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("ignoring a watch line that is not JSON")
            continue
        if isinstance(event, dict):
            yield event


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]
