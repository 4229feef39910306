"""The async side of the config sources: feed what a source observes into the `ConfigReloader`.

`follow_configmap` runs the blocking watcher in a worker thread and consumes its states in order on
the event loop; `follow_file` polls a file (or a mounted ConfigMap volume). Both run until cancelled.
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


def configmap_reporter(ref: ConfigMapRef, core_api: Any) -> Reporter:
    async def report(reason: str, message: str, warning: bool, uid: str | None) -> None:
        body = event_body(ref, uid=uid, reason=reason, message=message, warning=warning, now=utc_now())
        await asyncio.to_thread(post_event, core_api, ref, body)

    return report


async def follow_configmap(
    ref: ConfigMapRef, reloader: ConfigReloader, core_api: Any, *, watch_timeout_s: int = 240
) -> None:
    loop = asyncio.get_running_loop()
    states: asyncio.Queue[ConfigMapState] = asyncio.Queue()

    def deliver(state: ConfigMapState) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is left to tell
            loop.call_soon_threadsafe(states.put_nowait, state)

    watcher = ConfigMapWatcher(ref, core_api, deliver, watch_timeout_s=watch_timeout_s)
    thread = threading.Thread(target=watcher.run, name=f"detour-watch-{ref.name}", daemon=True)
    thread.start()
    try:
        while True:
            state = await states.get()
            if state.text is not None:
                origin = f"configmap:{ref}@{state.resource_version}"
                await reloader.offer_text(state.text, origin=origin, uid=state.uid)
            else:
                await reloader.offer_missing(f"configmap {ref}: {state.problem}", uid=state.uid)
    finally:
        watcher.stop()
        await asyncio.to_thread(thread.join, 5)


async def follow_file(
    path: str, reloader: ConfigReloader, *, initial_text: str, interval_s: float = 0.5
) -> None:
    async def changed(text: str) -> None:
        await reloader.offer_text(text, origin=f"file:{path}")

    watcher = FileWatcher(path, changed, interval_s=interval_s)
    watcher.prime(initial_text)
    await watcher.run()
