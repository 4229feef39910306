"""A Kubernetes API server on 127.0.0.1 for ConfigMaps and Events, good enough for the real client.

No real API server can run where the tests run, yet the ConfigMap watcher must be tested against the
wire protocol the official `kubernetes` client speaks (sync and `kubernetes.aio`), not against a
mock of the client. `FakeKubeAPI` serves that protocol over HTTP with aiohttp:

- ``GET /api/v1[/namespaces/{ns}]/configmaps`` — list (``fieldSelector`` on ``metadata.name`` /
  ``metadata.namespace``, ``resourceVersion`` + ``resourceVersionMatch``) or, with ``watch=true``, a
  chunked stream of newline-delimited ``{"type", "object"}`` events: replayed history after
  ``resourceVersion`` (or the current state as ADDED when it is unset or "0"), then live events,
  BOOKMARKs every ``bookmark_interval_s`` when ``allowWatchBookmarks`` is set, a clean end after
  ``timeoutSeconds``, and a single ERROR event carrying a 410 ``Expired`` Status for a version older
  than the last ``compact()``.
- ``GET /api/v1/namespaces/{ns}/configmaps/{name}``.
- Events, core/v1 and events.k8s.io/v1: POST, GET, list, PATCH, PUT.
- Everything else is a 404 Status; a request without a Bearer token is a 401 (any token passes).

Tests change the cluster synchronously (`apply_configmap`, `delete_configmap`, `compact`,
`drop_watches`) and wait on what clients did (`wait_for_event`, `wait_for_watchers`, `requests`).
State survives `stop()` / `start()`, which reuses the same port, so a watcher sees an API server
restart. Semantics without I/O live in `fake_kube_state`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from tests.support.fake_kube_state import (
    JSON,
    Change,
    KubeError,
    KubeState,
    matches,
    parse_bool,
    parse_field_selector,
    parse_resource_version,
    status_body,
)

_CORE, _EVENTS_V1 = "v1", "events.k8s.io/v1"
_PATCH_TYPES = (
    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
)
_DROP = object()  # put in a watch's queue by drop_watches()
_T = TypeVar("_T")


def _dumps(obj: JSON) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_response(obj: JSON, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json")


def _check_patch_type(content_type: str, body: Any) -> None:
    """A JSON patch is a list of operations; merge and strategic merge patches are objects."""
    expected = {
        "application/json-patch+json": list,
        "application/merge-patch+json": dict,
        "application/strategic-merge-patch+json": dict,
    }.get(content_type)
    if expected is None:
        message = (
            f"the body of the request was in an unknown format - accepted media types include: {_PATCH_TYPES}"
        )
        raise KubeError(415, "UnsupportedMediaType", message)
    if not isinstance(body, expected):
        raise KubeError(400, "BadRequest", f"a {content_type} body must be a JSON {expected.__name__}")


@dataclass(eq=False)
class _Watch:
    namespace: str | None
    selector: Any
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    transport: asyncio.Transport | None = None


class FakeKubeAPI:
    """See the module docstring. Use as ``async with FakeKubeAPI() as api:``."""

    bookmark_interval_s: float = 1.0
    # The real server ends a watch without timeoutSeconds after a random 30-60 minutes; None = never.
    default_watch_timeout_s: float | None = None
    require_token: bool = True

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.requests: list[tuple[str, str]] = []
        self._state = KubeState(on_change=self._publish)
        self._watches: set[_Watch] = set()
        self._returned_events: set[int] = set()
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._changed = self._changed or asyncio.Condition()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that hangs up ends its watch handler (and the watcher count).
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            self._drop_watches()
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeKubeAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def kubeconfig(self, path: str | os.PathLike[str]) -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}
            ],
        }
        Path(path).write_text(yaml.safe_dump(config))
        return str(path)

    # --- state, changed by tests ----------------------------------------------------------

    @property
    def events(self) -> list[JSON]:
        return self._state.events

    @property
    def resource_version(self) -> str:
        return str(self._state.rv)

    def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> JSON:
        return self._on_loop(self._state.apply_configmap, namespace, name, data)

    def delete_configmap(self, namespace: str, name: str) -> None:
        self._on_loop(self._state.delete_configmap, namespace, name)

    def compact(self) -> None:
        self._on_loop(self._state.compact)

    def reset(self) -> None:
        """A fresh cluster: no objects, no events, no history, resourceVersion back at the start."""

        def reset() -> None:
            self._drop_watches()
            self._state.reset()
            self.requests.clear()
            self._returned_events.clear()

        self._on_loop(reset)

    def drop_watches(self) -> None:
        """Cut every open watch mid-stream: no terminating chunk, the socket just closes."""
        self._on_loop(self._drop_watches)

    def _drop_watches(self) -> None:
        for watch in list(self._watches):
            if watch.transport is not None:
                watch.transport.abort()
            watch.queue.put_nowait(_DROP)

    def _on_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a change on the server's loop, so the watch streams see changes in order."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.get_ident() == self._loop_thread:
            return fn(*args)
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def _publish(self, change: Change) -> None:
        for watch in self._watches:
            watch.queue.put_nowait(change)

    # --- waiting for clients --------------------------------------------------------------

    async def wait_for_event(self, reason: str, timeout: float = 5.0) -> JSON:  # noqa: ASYNC109 (the API)
        """The first Event with this reason that no earlier call returned."""

        def unreturned() -> int | None:
            return next(
                (
                    i
                    for i, e in enumerate(self.events)
                    if e.get("reason") == reason and i not in self._returned_events
                ),
                None,
            )

        await self._wait(lambda: unreturned() is not None, timeout, f"an Event with reason {reason!r}")
        index = unreturned()
        assert index is not None
        self._returned_events.add(index)
        return self.events[index]

    async def wait_for_watchers(self, count: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self._wait(lambda: len(self._watches) >= count, timeout, f"{count} open watch(es)")

    async def _wait(self, predicate: Callable[[], bool], seconds: float, what: str) -> None:
        changed = self._changed = self._changed or asyncio.Condition()
        try:
            async with asyncio.timeout(seconds), changed:
                await changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"fake API server: no {what} within {seconds} s") from None

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    # --- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        query = "&".join(f"{k}={v}" for k, v in request.query.items())
        self.requests.append((request.method, request.path + (f"?{query}" if query else "")))
        if self.require_token and not request.headers.get("Authorization", "").startswith("Bearer "):
            return _json_response(status_body(401, "Unauthorized", "Unauthorized"), 401)
        try:
            return await handler(request)
        except KubeError as exc:
            return _json_response(exc.status(), exc.code)
        except json.JSONDecodeError as exc:
            return _json_response(status_body(400, "BadRequest", f"invalid JSON body: {exc}"), 400)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        method = request.method
        match parts:
            case ["api", "v1", "configmaps"] if method == "GET":
                return await self._configmaps(request, None)
            case ["api", "v1", "namespaces", ns, "configmaps"] if method == "GET":
                return await self._configmaps(request, ns)
            case ["api", "v1", "namespaces", ns, "configmaps", name] if method == "GET":
                return _json_response(self._state.get_configmap(ns, name))
            case ["api", "v1", "namespaces", ns, "events", *rest]:
                return await self._events(request, _CORE, ns, rest)
            case ["apis", "events.k8s.io", "v1", "namespaces", ns, "events", *rest]:
                return await self._events(request, _EVENTS_V1, ns, rest)
        raise KubeError(404, "NotFound", "the server could not find the requested resource")

    async def _configmaps(self, request: web.Request, namespace: str | None) -> web.StreamResponse:
        query = request.query
        selector = parse_field_selector(query.get("fieldSelector"))
        if query.get("labelSelector"):
            raise KubeError(400, "BadRequest", "fake API server: labelSelector is not supported")
        rv = parse_resource_version(query.get("resourceVersion"))
        if parse_bool(query.get("watch")):
            return await self._watch(request, _Watch(namespace, selector), rv)
        self._state.check_list_version(rv, query.get("resourceVersionMatch"))
        return _json_response(self._state.list_body(self._state.list_configmaps(namespace, selector)))

    async def _watch(self, request: web.Request, watch: _Watch, since: int | None) -> web.StreamResponse:
        query = request.query
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))
        timeout: float | None = self.default_watch_timeout_s
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise KubeError(400, "BadRequest", "invalid timeoutSeconds") from None
        if since is not None and since > self._state.rv:
            self._state.check_list_version(since, None)  # 504 Too large resource version
        try:
            backlog = self._state.replay(since, watch.namespace, watch.selector)
        except KubeError as exc:  # 410 Gone arrives inside a 200 stream, as an ERROR event
            backlog, expired = [{"type": "ERROR", "object": exc.status()}], True
        else:
            expired = False
            watch.transport = request.transport
            self._watches.add(watch)  # subscribed in the same loop turn as the replay: nothing lost
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            await self._notify()
            for event in backlog:
                await response.write(_dumps(event) + b"\n")
            if expired or await self._stream_live(response, watch, bookmarks, lifetime=timeout):
                await response.write_eof()
        except ConnectionError:
            pass  # the client hung up, or drop_watches() cut it
        finally:
            self._watches.discard(watch)
            await asyncio.shield(self._notify())
        return response

    async def _stream_live(
        self, response: web.StreamResponse, watch: _Watch, bookmarks: bool, *, lifetime: float | None
    ) -> bool:
        """Live events until the lifetime ends (True: end cleanly) or drop_watches() (False: cut)."""
        loop = asyncio.get_running_loop()
        deadline = None if lifetime is None else loop.time() + lifetime
        next_bookmark = loop.time() + self.bookmark_interval_s
        while True:
            if not watch.queue.empty():
                item = watch.queue.get_nowait()
            else:
                times = [t for t in (deadline, next_bookmark if bookmarks else None) if t is not None]
                wait = max(0.0, min(times) - loop.time()) if times else None
                try:
                    item = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    if not watch.queue.empty():
                        continue  # a change raced the timer: send it before any bookmark
                    timed_out = deadline is not None and loop.time() >= deadline
                    if bookmarks:  # the real server also bookmarks just before it ends a watch
                        await response.write(_dumps(self._bookmark()) + b"\n")
                        next_bookmark = loop.time() + self.bookmark_interval_s
                    if timed_out:
                        return True
                    continue
            if item is _DROP:
                return False
            if matches(item.object, watch.namespace, watch.selector):
                await response.write(_dumps(item.event()) + b"\n")

    def _bookmark(self) -> JSON:
        # The queue is empty when this runs, so every change up to the current version was sent.
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._state.rv), "creationTimestamp": None},
            },
        }

    async def _events(self, request: web.Request, api_version: str, ns: str, rest: list[str]) -> web.Response:
        match request.method, rest:
            case "POST", []:
                created = self._state.create_event(api_version, ns, await request.json())
                await self._notify()
                return _json_response(created, 201)
            case "GET", []:
                return _json_response(self._state.list_events(api_version, ns))
            case "GET", [name]:
                return _json_response(self._state.get_event(api_version, ns, name))
            case ("PATCH" | "PUT") as method, [name]:
                body = await request.json()
                if method == "PATCH":
                    _check_patch_type(request.content_type, body)
                updated = self._state.update_event(api_version, ns, name, body, replace=method == "PUT")
                await self._notify()
                return _json_response(updated)
        raise KubeError(404, "NotFound", "the server could not find the requested resource")
