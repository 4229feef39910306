"""A real `redis-server` for the shared-state tests, on 127.0.0.1 and a free port.

CI starts from a clean Debian machine as root, so a missing `redis-server` is installed with apt-get
(like `tests/image/tools.py` installs podman); anywhere else it fails the tests with the command to
run — the shared state must never pass as a skipped test. The server keeps nothing on disk, so a
server killed and started again on its port comes back empty, as a Redis that lost its data would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator

import pytest

from tests.support.processes import free_port

APT_PACKAGE = "redis-server"
INSTALL_HINT = f"apt-get update && apt-get install -y {APT_PACKAGE}"


def ensure_redis_server() -> str:
    """The path of `redis-server`, installed with apt-get when missing and we may (root)."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"redis-server is not installed; install it: {INSTALL_HINT}")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", APT_PACKAGE]):
        result = subprocess.run(
            command, env=apt_env, capture_output=True, text=True, check=False, timeout=900
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is still missing after apt-get install")
    return found


class RedisServer:
    """One `redis-server` process that a test can kill and start again on the same port."""

    def __init__(self, binary: str, *extra: str) -> None:
        self.binary = binary
        self.extra = extra  # more redis-server options, e.g. ("--requirepass", "…")
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        # --save "" and no AOF: nothing on disk; --protected-mode: loopback only anyway.
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--loglevel", "notice", *self.extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.process.stdout is not None
        seen: list[str] = []
        async with asyncio.timeout(10):
            while True:  # the server says when it accepts connections: no polling
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise AssertionError("redis-server exited before it was ready:\n" + "".join(seen))
                seen.append(line)
                if "Ready to accept connections" in line:
                    break
        self._drain = asyncio.ensure_future(self._discard_output())

    async def _discard_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while await self.process.stdout.readline():
            pass

    async def kill(self) -> None:
        """SIGKILL: gone at once, as a crashed or partitioned Redis, its data lost."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError):
                self._drain.cancel()
                await self._drain

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as a Redis that is slow or hung."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextlib.asynccontextmanager
async def redis_server(*extra: str) -> AsyncIterator[RedisServer]:
    server = RedisServer(ensure_redis_server(), *extra)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
