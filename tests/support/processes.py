"""Detour commands run as real processes by the tests, and read through their log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoggedProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[str] = []

    async def line_containing(self, text: str, *, within_s: float = 10) -> str:
        """Read the process's log until a line says `text` (the process tells us; no polling)."""
        assert self.process.stderr is not None
        async with asyncio.timeout(within_s):
            while True:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise AssertionError(f"detour exited before logging {text!r}:\n" + "".join(self.log))
                self.log.append(line)
                if text in line:
                    return line


@contextlib.asynccontextmanager
async def detour_process(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[LoggedProcess]:
    """`detour ARGS…` with its log on a pipe; terminated (and waited for) on exit.

    The gRPC API is off unless a test asks for it (`--grpc-port`, or `DETOUR_GRPC_PORT` in `env`):
    its default port is fixed, and tests run sidecars side by side."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar.cli.main", *args,
        stderr=asyncio.subprocess.PIPE, env={"DETOUR_GRPC_PORT": "0", **os.environ, **(env or {})},
    )  # fmt: skip
    try:
        yield LoggedProcess(process)
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()  # a test fails on the timeout, but never leaves a sidecar behind
            await process.wait()
            raise
