"""`detour serve --config FILE` as a real process for the hardening suites.

Its log is drained as it is written (a `--log-level debug` process must never block on a full pipe)
and can be awaited line by line; `/admin/state` is one call away; and /proc tells what the process
holds: resident memory, file descriptors and TCP connections. Config edits are written atomically
and their outcome is awaited from the log the reloader writes, never slept for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import httpx

from tests.support.processes import LoggedProcess, detour_process

SERVING = re.compile(r"detour serving on (http://\S+)")
# What the config reloader (or the file watcher) logs for each change it sees, on the first line of
# its record (a rejection's problems follow on lines of their own).
OUTCOMES = {
    "applied": " applied from file:",
    "rejected": "rejected; the last good config stays active",
    "unreadable": "could not be read",
    "failed": "the source is still followed",
}
T = TypeVar("T")
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


class Serving:
    """A running `detour serve`: its URL, its log so far, its state and its /proc numbers."""

    def __init__(self, logged: LoggedProcess, url: str, config: pathlib.Path) -> None:
        self.logged = logged
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.config = config
        self._more = asyncio.Condition()
        self._ended = False
        self._drain = asyncio.ensure_future(self._read_log())

    @property
    def pid(self) -> int:
        return self.logged.process.pid

    @property
    def log(self) -> list[str]:
        return self.logged.log

    def logged_match(self, pattern: str) -> re.Match[str]:
        """The first match of `pattern` in the log so far (for lines logged before serving)."""
        for line in self.log:
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"nothing in the log matches {pattern!r}")

    def mark(self) -> int:
        """Where the log is now: pass it to `line` to wait only for what comes after."""
        return len(self.log)

    async def _read_log(self) -> None:
        stream = self.logged.process.stderr
        assert stream is not None
        while line := (await _next_line(stream)).decode(errors="replace"):
            self.log.append(line)
            async with self._more:
                self._more.notify_all()
        self._ended = True
        async with self._more:
            self._more.notify_all()

    async def line(self, *needles: str, since: int = 0, within_s: float = 10.0) -> tuple[int, str]:
        """The first line at or after index `since` containing any of `needles`, and its index."""
        scanned = since

        def found() -> bool:
            nonlocal scanned
            while scanned < len(self.log):
                if any(needle in self.log[scanned] for needle in needles):
                    return True
                scanned += 1
            return self._ended

        try:
            async with asyncio.timeout(within_s), self._more:
                await self._more.wait_for(found)
        except TimeoutError:
            raise AssertionError(f"no log line with {needles} within {within_s} s") from None
        if scanned >= len(self.log):
            raise AssertionError(f"detour exited before logging any of {needles}:\n" + "".join(self.log))
        return scanned, self.log[scanned]

    async def state(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.url + "/admin/state")
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        return state

    def write_config(self, text: str | bytes) -> None:
        """Replace the config file atomically (the watcher never reads half a file)."""
        staged = self.config.with_suffix(".staged")
        # A lone surrogate in `text` becomes bytes that are not UTF-8, as a real file could hold.
        staged.write_bytes(text.encode(errors="surrogatepass") if isinstance(text, str) else text)
        os.replace(staged, self.config)

    async def reload(self, text: str | bytes, *, within_s: float = 10.0) -> str:
        """Write a config and wait for the reloader's verdict: one of `OUTCOMES`' keys.

        The text must differ from every text written before it (the watcher reacts to changes only;
        callers append a counter as a comment)."""
        since = self.mark()
        self.write_config(text)
        _, line = await self.line(*OUTCOMES.values(), since=since, within_s=within_s)
        return next(outcome for outcome, needle in OUTCOMES.items() if needle in line)

    # --- what the process holds, from /proc ---------------------------------------------------------

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tcp_states(self, *, local_port: int | None = None) -> Counter[str]:
        """States of this process's TCP sockets (optionally only those bound to `local_port`)."""
        return tcp_states(self.pid, local_port=local_port)


async def _next_line(stream: asyncio.StreamReader) -> bytes:
    """The next line; one longer than the reader's buffer (a problem quoting a 100 KB value) comes
    in pieces rather than ending the drain."""
    try:
        return await stream.readuntil(b"\n")
    except asyncio.IncompleteReadError as end:
        return end.partial
    except asyncio.LimitOverrunError as long:
        return await stream.readexactly(long.consumed)


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def tcp_states(pid: int, *, local_port: int | None = None) -> Counter[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed while we looked
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    states: Counter[str] = Counter()
    for table in ("tcp", "tcp6"):
        for row in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in inodes and (local_port is None or int(local.rsplit(":", 1)[1], 16) == local_port):
                states[_TCP_STATES.get(state, state)] += 1
    return states


async def settle(
    probe: Callable[[], T], done: Callable[[T], bool], *, within_s: float = 5.0, every_s: float = 0.05
) -> T:
    """Poll `probe()` until `done(value)` or the deadline, for facts no event announces (what /proc
    shows about sockets being released). Returns the last value; the caller asserts on it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    value = probe()
    while not done(value) and loop.time() < deadline:
        await asyncio.sleep(every_s)
        value = probe()
    return value


@contextlib.asynccontextmanager
async def detour_serve(
    config_text: str,
    directory: pathlib.Path,
    *args: str,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Serving]:
    """`detour serve --config DIR/routes.yaml --port 0 ARGS…`, serving once it says so.

    On exit the process is terminated (SIGTERM: a graceful drain, telemetry flushed) and waited for,
    and its whole log has been read."""
    config = directory / "routes.yaml"
    config.write_text(config_text)
    command = ("serve", "--config", str(config), "--port", "0", "--reload-interval", "0.05", *args)
    async with detour_process(*command, env=dict(env or {})) as logged:
        line = await logged.line_containing("detour serving on", within_s=15)
        match = SERVING.search(line)
        assert match is not None, line
        serving = Serving(logged, match[1], config)
        try:
            yield serving
        finally:
            process = logged.process
            if process.returncode is None:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
            await asyncio.wait_for(serving._drain, 5)
