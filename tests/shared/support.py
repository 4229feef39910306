"""`detour serve` processes sharing one Redis, pointed at simulated providers, and how the tests
talk to them: a chat request, /admin/state, and their log (where each sidecar says what it learned,
so a test awaits the line instead of polling)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from sidecar.shared.merge import Record
from sidecar.simulate.server import SimulatedProvider
from tests.support.processes import LoggedProcess, detour_process, free_port
from tests.support.running import limits_alternative_rule, provider

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def routes(
    directory: pathlib.Path,
    primary: SimulatedProvider,
    backup: SimulatedProvider,
    redis_url: str,
    *,
    circuit_breaker: dict[str, Any] | None = None,
    max_retries: int | None = None,
    **strategy: Any,
) -> pathlib.Path:
    """primary → backup under one limits-alternative rule, limits shared through `redis_url`;
    `circuit_breaker` and `max_retries` (of both providers) when given."""
    import yaml

    retries = {} if max_retries is None else {"max_retries": max_retries}
    routing: dict[str, Any] = {"rules": [limits_alternative_rule(["primary"], ["backup"], **strategy)]}
    if circuit_breaker is not None:
        routing["circuit_breaker"] = circuit_breaker
    document = {
        "providers": {
            "primary": provider(primary.dialect, primary.base_url, api_key="sk-test-primary", **retries),
            "backup": provider(backup.dialect, backup.base_url, api_key="sk-test-backup", **retries),
        },
        "routing": routing,
        "state": {"backend": "redis", "url": redis_url, "key_prefix": "detour-test:", "timeout_ms": 200},
    }
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class Sidecar:
    """One `detour serve` process: its URL and its log, each line matched at most once."""

    process: LoggedProcess
    url: str
    _claimed: set[int] = field(default_factory=set)

    async def logs(self, text: str, *, within_s: float = 10) -> str:
        """The first line not matched before that says `text`, already read or still to come."""
        for index, line in enumerate(self.process.log):
            if index not in self._claimed and text in line:
                self._claimed.add(index)
                return line
        line = await self.process.line_containing(text, within_s=within_s)
        self._claimed.add(len(self.process.log) - 1)
        return line

    async def chat(self) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(f"{self.url}/v1/chat/completions", json=CHAT)

    async def state(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{self.url}/admin/state")
        answer.raise_for_status()
        state: dict[str, Any] = answer.json()
        return state


@contextlib.asynccontextmanager
async def sidecar(config: pathlib.Path) -> AsyncIterator[Sidecar]:
    """`detour serve --config CONFIG`, serving and connected to its Redis."""
    port = free_port()
    async with detour_process("serve", "--config", str(config), "--port", str(port)) as process:
        served = Sidecar(process, f"http://127.0.0.1:{port}")
        await served.logs("shared state: connected to Redis")
        await served.logs("detour serving on")
        yield served


class FakeLink:
    """Connects once `gate` is set; records every write; `live` returns `held`. With `stuck`, the
    first write never finishes, so the queue fills behind it."""

    def __init__(self, held: list[Record], *, stuck: bool = False) -> None:
        self.prefix = "x:"
        self.gate = asyncio.Event()
        self.held = held
        self.stuck = stuck
        self.written: list[Record] = []

    async def subscribe(self) -> None:
        await self.gate.wait()

    async def live(self, provider_ids: object, *, at_most: int) -> list[Record]:
        return self.held[:at_most]

    async def write(self, record: Record) -> bool:
        self.written.append(record)
        if self.stuck:
            await asyncio.Event().wait()
        return True

    async def ping(self) -> None:
        pass

    async def published(self) -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    async def close(self) -> None:
        pass
