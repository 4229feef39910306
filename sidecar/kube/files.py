"""`--config FILE` with reload: notice when the file changes, including a mounted ConfigMap's swap.

The kubelet updates a ConfigMap volume by writing a new timestamped directory and atomically
re-pointing the `..data` symlink, so the file's own mtime may never change; what changes is where
the path resolves to, and its content. Polling the resolved path and a content hash catches both,
costs one stat per interval, and needs no inotify support from the node.

A file's timestamps tick at the kernel's clock granularity (a few milliseconds), so two edits in
one tick with the same size look alike to a stat: while the file's mtime is younger than
`SETTLE_S`, each check also reads it and compares the hash, so a quick second edit is not missed.

`run` never ends but by cancellation: a check that fails unexpectedly is handed to `on_error` (by
default: logged by its type) and the next interval checks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("detour.config")

SETTLE_S = 2.0  # after a change, content is compared on every check for this long

Signature = tuple[str, float, int, int]  # resolved path, mtime, size, inode


class FileWatcher:
    def __init__(
        self,
        path: str,
        on_change: Callable[[str], Awaitable[None]],
        *,
        interval_s: float = 0.5,
        on_error: Callable[[Exception], Awaitable[None]] | None = None,
    ) -> None:
        self.path = path
        self._on_change = on_change
        self._on_error = on_error
        self._interval_s = interval_s
        self._seen: Signature | None = None
        self._digest: str | None = None
        self._unreadable = False

    def _signature(self) -> Signature:
        real = os.path.realpath(self.path)
        return _signed(real, os.stat(real))

    def prime(self, text: str) -> None:
        """Remember the content already loaded, so only a real change triggers a reload."""
        self._digest = hashlib.sha256(text.encode()).hexdigest()
        try:
            self._seen = self._signature()
        except OSError:
            self._seen = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception as exc:
                await self._failed(exc)

    async def _failed(self, exc: Exception) -> None:
        if self._on_error is not None:
            try:
                await self._on_error(exc)
                return
            except Exception as again:
                exc = again
        log.error(
            "config file %s: unexpected %s while checking it; watching on", self.path, type(exc).__name__
        )

    async def check(self) -> None:
        try:
            signature = self._signature()
        except OSError:
            return  # mid-swap, or removed: keep the last good config and look again next time
        if signature == self._seen and (self._unreadable or time.time() - signature[1] >= SETTLE_S):
            return
        try:
            # The stat above and this read are not atomic: remember the file actually read, or
            # a newer file landing in between is seen as "changed" again and reported twice.
            signature, data = await asyncio.to_thread(read_signed, self.path)
        except FileNotFoundError:
            return  # swapped away between the stat and the open: look again next time
        except OSError as exc:
            self._seen = signature
            self._report_unreadable(exc.strerror or type(exc).__name__)
            return
        self._seen = signature
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._report_unreadable(type(exc).__name__)
            return
        self._unreadable = False
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return
        self._digest = digest
        await self._on_change(text)

    def _report_unreadable(self, reason: str) -> None:
        log.warning("config file %s could not be read: %s", self.path, reason)
        self._unreadable = True  # said once: looked at again when the file changes


def read_signed(path: str) -> tuple[Signature, bytes]:
    """The file's bytes with the signature of the very file they came from."""
    real = os.path.realpath(path)
    with open(real, "rb") as handle:
        return _signed(real, os.fstat(handle.fileno())), handle.read()


def _signed(real: str, stat: os.stat_result) -> Signature:
    return real, stat.st_mtime, stat.st_size, stat.st_ino


def read_text(path: str) -> str:
    """The file as UTF-8 text, decoded as the watcher decodes it (so their digests agree)."""
    return read_signed(path)[1].decode("utf-8")
