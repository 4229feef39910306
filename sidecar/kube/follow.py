"""The async side of the config sources: feed what a source observes into the `ConfigReloader`.

`follow_configmap` runs the blocking watcher in a worker thread and consumes its states in order on
the event loop; `follow_file` polls a file (or a mounted ConfigMap volume). Both run until cancelled
and never end otherwise: whatever goes wrong unexpectedly — in the reloader, in the file check, or in
the watcher thread, which is then started over after a pause — is recorded by the reloader (logged
by type, counted in `/admin/state`) and the source is followed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from sidecar.kube.configmap import ConfigMapRef, ConfigMapState, ConfigMapWatcher
from sidecar.kube.events import event_body, post_event
from sidecar.kube.files import FileWatcher
from sidecar.kube.reload import ConfigReloader, Reporter, utc_now

WATCHER_RESTART_S = 1.0  # pause before starting a watcher thread over after it died unexpectedly


def configmap_reporter(ref: ConfigMapRef, core_api: Any) -> Reporter:
    async def report(reason: str, message: str, warning: bool, uid: str | None) -> None:
        body = event_body(ref, uid=uid, reason=reason, message=message, warning=warning, now=utc_now())
        await asyncio.to_thread(post_event, core_api, ref, body)

    return report


async def follow_configmap(
    ref: ConfigMapRef,
    reloader: ConfigReloader,
    core_api: Any,
    *,
    watch_timeout_s: int = 240,
    restart_s: float = WATCHER_RESTART_S,
) -> None:
    loop = asyncio.get_running_loop()
    # What the watcher thread saw, in order; an exception is the thread's loop dying unexpectedly.
    states: asyncio.Queue[ConfigMapState | Exception] = asyncio.Queue()
    stopping = threading.Event()

    def deliver(state: ConfigMapState | Exception) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is left to tell
            loop.call_soon_threadsafe(states.put_nowait, state)

    watcher = ConfigMapWatcher(ref, core_api, deliver, watch_timeout_s=watch_timeout_s)

    def watch() -> None:
        """The watcher's loop returns only once stopped; if it raises instead, start it over."""
        while not stopping.is_set():
            try:
                watcher.run()
            except Exception as exc:
                deliver(exc)
                stopping.wait(restart_s)

    thread = threading.Thread(target=watch, name=f"detour-watch-{ref.name}", daemon=True)
    thread.start()
    try:
        while True:
            state = await states.get()
            try:
                await _offer(ref, reloader, state)
            except Exception as exc:  # the reloader records its own failures; this is a last resort
                await reloader.record_failure(exc, during=f"following configmap {ref}")
    finally:
        stopping.set()
        watcher.stop()
        await asyncio.to_thread(thread.join, 5)


async def _offer(ref: ConfigMapRef, reloader: ConfigReloader, state: ConfigMapState | Exception) -> None:
    if isinstance(state, Exception):
        await reloader.record_failure(state, during=f"watching configmap {ref}")
    elif state.text is not None:
        origin = f"configmap:{ref}@{state.resource_version}"
        await reloader.offer_text(state.text, origin=origin, uid=state.uid)
    else:
        await reloader.offer_missing(f"configmap {ref}: {state.problem}", uid=state.uid)


async def follow_file(
    path: str, reloader: ConfigReloader, *, initial_text: str, interval_s: float = 0.5
) -> None:
    async def changed(text: str) -> None:
        await reloader.offer_text(text, origin=f"file:{path}")

    async def failed(exc: Exception) -> None:
        await reloader.record_failure(exc, during=f"checking config file {path}")

    watcher = FileWatcher(path, changed, interval_s=interval_s, on_error=failed)
    watcher.prime(initial_text)
    await watcher.run()
