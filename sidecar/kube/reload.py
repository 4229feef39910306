"""Every new config is validated before it is swapped in (docs/architecture.md §5).

`ConfigReloader` is the one place a config from any source (file, mounted volume, ConfigMap watch)
becomes the active one: valid → applied atomically (in-flight requests keep their snapshot);
invalid, deleted or missing its key → rejected, the last good config stays active, and the outcome
is logged, counted and — for a ConfigMap — posted as a Kubernetes Event on it.

A reload never raises into the source that offered it (docs/architecture.md §8): anything unexpected
while loading, applying or reporting is logged by the exception's type and where it was raised —
never its message, which may quote a key — counted in `ReloadStatus.failed`, and the source goes on
watching with the last good config active.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.config.loader import LoadedConfig, load_config_text
from sidecar.errors import ConfigError
from sidecar.routing.events import ConfigRejected

log = logging.getLogger("detour.config")

Reporter = Callable[[str, str, bool, str | None], Awaitable[None]]  # reason, message, warning, uid


@dataclass
class ReloadStatus:
    """Shown in /admin/state: where the config comes from and what became of the last change."""

    source: str
    version: str | None = None
    last_result: str = "pending"  # applied | rejected | missing | failed | pending
    last_problems: list[str] = field(default_factory=list)
    last_change_at: float | None = None
    applied: int = 0
    rejected: int = 0
    failed: int = 0  # unexpected exceptions while following the source (a bug, not a config problem)
    last_failure: str | None = None  # the type of the latest one; never its message
    # Told of every change that did not become the config in force (gRPC `Admin.WatchEvents`; an
    # applied config is the router's own event). Called on the event loop; they must not block.
    _listeners: tuple[Callable[[ConfigRejected], None], ...] = field(default=(), repr=False, compare=False)

    def subscribe(self, listener: Callable[[ConfigRejected], None]) -> Callable[[], None]:
        """Hear rejections from now on, until the returned function is called."""
        self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            self._listeners = tuple(each for each in self._listeners if each is not listener)

        return unsubscribe

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": self.version,
            "last_result": self.last_result,
            "last_problems": self.last_problems,
            "last_change_at": self.last_change_at,
            "applied": self.applied,
            "rejected": self.rejected,
            "failed": self.failed,
            "last_failure": self.last_failure,
        }


class ConfigReloader:
    def __init__(
        self,
        apply: Callable[[LoadedConfig], object],
        *,
        source: str,
        env: Mapping[str, str],
        report: Reporter | None = None,
    ) -> None:
        self._apply = apply
        self._env = env
        self._report = report
        self.status = ReloadStatus(source=source)
        self._changed = asyncio.Condition()
        self._last_missing: str | None = None
        # Offers are checked one at a time, in order: a slow config checked in a thread must not be
        # applied after a later one.
        self._one_at_a_time = asyncio.Lock()

    async def offer_text(self, text: str, *, origin: str, uid: str | None = None) -> bool:
        """Validate and apply `text`; returns whether it is now the active config. Never raises but
        for cancellation: an unexpected failure is recorded (`record_failure`) and returns False."""
        try:
            async with self._one_at_a_time:
                return await self._offer_text(text, origin=origin, uid=uid)
        except Exception as exc:
            await self.record_failure(exc, during=f"reloading config from {origin}", uid=uid)
            return False

    async def offer_missing(self, problem: str, *, uid: str | None = None) -> None:
        """The source has no config (ConfigMap deleted, key missing): keep serving the last good one."""
        try:
            await self._offer_missing(problem, uid=uid)
        except Exception as exc:
            await self.record_failure(
                exc, during=f"handling a missing config from {self.status.source}", uid=uid
            )

    async def record_failure(self, exc: BaseException, *, during: str, uid: str | None = None) -> None:
        """Something unexpected happened while following the source: log it by type (no message:
        it may quote a value), count it, and keep the last good config. The caller goes on."""
        name = self._note_failure(exc, during)
        keeping = (
            f"version {self.status.version} stays active"
            if self.status.version
            else "no config is active yet"
        )
        self._record("failed", [f"unexpected {name} while {during}; {keeping}"])
        await self._tell("ReloadFailed", f"unexpected {name} while {during}; {keeping}", True, uid)

    def _note_failure(self, exc: BaseException, during: str) -> str:
        name = type(exc).__name__
        self.status.failed += 1
        self.status.last_failure = name
        log.error(
            "unexpected %s while %s (raised at %s); the last good config stays active and the source "
            "is still followed",
            name,
            during,
            _raised_at(exc),
        )
        return name

    async def _offer_text(self, text: str, *, origin: str, uid: str | None) -> bool:
        try:
            # In a thread: checking a large config takes a while, and requests must not wait.
            loaded = await asyncio.to_thread(load_config_text, text, source=origin, env=self._env)
        except ConfigError as exc:
            problems = [str(problem) for problem in exc.problems]
            self._record("rejected", problems)
            self.status.rejected += 1
            log.error(
                "config from %s rejected; the last good config stays active:\n  %s",
                origin,
                "\n  ".join(problems),
            )
            await self._tell(
                "InvalidRoutingConfig", _rejection_message(problems, self.status.version), True, uid
            )
            return False
        self._last_missing = None
        if loaded.version == self.status.version:
            return True  # the same config again (a relist, a touch): nothing to do, nothing to report
        for warning in loaded.warnings:
            log.warning("%s", warning)
        self._apply(loaded)
        self.status.version = loaded.version
        self.status.applied += 1
        self._record("applied", [])
        await self._tell("ConfigApplied", f"routing config version {loaded.version} applied", False, uid)
        return True

    async def _offer_missing(self, problem: str, *, uid: str | None) -> None:
        if problem == self._last_missing:
            return
        self._last_missing = problem
        keeping = (
            f"keeping version {self.status.version}" if self.status.version else "no config is loaded yet"
        )
        self._record("missing", [problem])
        self.status.rejected += 1
        log.error("config source %s: %s; %s", self.status.source, problem, keeping)
        await self._tell("InvalidRoutingConfig", f"{problem}; {keeping}", True, uid)

    async def wait_for(self, predicate: Callable[[ReloadStatus], bool], within_s: float = 5.0) -> None:
        """For tests and start-up: until the status satisfies `predicate`."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self.status))

    def _record(self, result: str, problems: list[str]) -> None:
        status = self.status
        status.last_result = result
        status.last_problems = problems
        status.last_change_at = time.time()
        if result != "applied" and status._listeners:
            event = ConfigRejected(status.source, result, tuple(problems), status.version)
            for listener in status._listeners:
                listener(event)

    async def _tell(self, reason: str, message: str, warning: bool, uid: str | None) -> None:
        async with self._changed:
            self._changed.notify_all()
        if self._report is None:
            return
        try:
            await self._report(reason, message, warning, uid)
        except Exception as exc:  # reporting is best effort; the outcome stands and is logged
            self._note_failure(exc, f"reporting {reason}")


def _rejection_message(problems: list[str], version: str | None) -> str:
    keeping = f"version {version} stays active" if version else "no config is active yet"
    return f"{len(problems)} problem(s); {keeping}: " + "; ".join(problems)


def _raised_at(exc: BaseException) -> str:
    """Where `exc` was raised, as ``file:line in function``: enough to find a bug, no values."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "an unknown place"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)
