"""`detour demo`: failover and recovery you can watch, with no API key and no network.

One process runs two simulated providers — an OpenAI-style one that allows a few requests per
window and then answers 429 with Retry-After, and an Anthropic-style one — the real sidecar on a
free port, and a driver that talks to the sidecar through the official `openai` SDK. The live view
shows who served each request, every 429, each failover, the limit's countdown and the return to
the primary; a summary table closes it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from sidecar.app import Sidecar, serve
from sidecar.config.loader import load_config_text
from sidecar.routing.admin_state import describe_state
from sidecar.routing.events import FailedOver, RateLimited, Served
from sidecar.simulate import SimulatedProvider, WindowLimiter
from sidecar.sockets import bind_socket

PRIMARY, ALTERNATIVE = "openai-primary", "anthropic-alt"
DEMO_ENV = {"DEMO_OPENAI_KEY": "sk-demo-openai", "DEMO_ANTHROPIC_KEY": "sk-demo-anthropic"}


def demo_config(primary_url: str, alternative_url: str) -> str:
    document = {
        "providers": {
            PRIMARY: {"type": "openai", "base_url": primary_url, "api_key": "$DEMO_OPENAI_KEY"},
            ALTERNATIVE: {
                "type": "anthropic",
                "base_url": alternative_url,
                "api_key": "${DEMO_ANTHROPIC_KEY}",
                "model_map": {"gpt-4o": "claude-sonnet-4-5"},
            },
        },
        "routing": {
            "rules": [
                {
                    "name": "gpt-with-rate-limit-protection",
                    "priority": 10,
                    "matcher": {"model_pattern": "^gpt-"},
                    "strategy": {
                        "type": "limits-alternative",
                        "primary_providers": [PRIMARY],
                        "alternative_providers": [ALTERNATIVE],
                    },
                }
            ]
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class Row:
    number: int
    stream: bool
    provider: str = "…"
    model: str = ""
    attempts: str = ""
    latency_ms: float = 0.0
    note: str = ""


@dataclass
class DemoLog:
    """Collects what the router reports; it is also the demo's `Observer`."""

    rows: list[Row] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    rate_limits: int = 0
    failovers: int = 0
    returns_to_primary: int = 0
    served: dict[str, int] = field(default_factory=dict)
    _primary_was_limited: bool = False
    _started: float = field(default_factory=time.monotonic)

    def _say(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self._started:5.1f}s  {text}")

    def on_rate_limited(self, event: RateLimited) -> None:
        self.rate_limits += 1
        self._primary_was_limited = self._primary_was_limited or event.provider_id == PRIMARY
        self._say(f"429 from {event.provider_id}: limited for {event.wait_s:.1f} s ({event.source})")

    def on_failed_over(self, event: FailedOver) -> None:
        self.failovers += 1
        self._say(f"failover {event.from_provider} → {event.to_provider} ({event.reason}), same request")

    def on_served(self, event: Served) -> None:
        self.served[event.provider_id] = self.served.get(event.provider_id, 0) + 1
        if event.provider_id == PRIMARY and self._primary_was_limited:
            self._primary_was_limited = False
            self.returns_to_primary += 1
            self._say(f"limit expired: back on {PRIMARY}")


async def run_demo(
    *, requests: int = 24, plain: bool = False, pace_s: float = 0.55, window_s: float = 4.0
) -> int:
    import openai

    log = DemoLog()
    async with (
        SimulatedProvider("openai", name=PRIMARY, reply_text="Hi from the OpenAI-style primary.") as primary,
        SimulatedProvider(
            "anthropic", name=ALTERNATIVE, reply_text="Hi from the Anthropic-style alternative."
        ) as alt,
    ):
        primary.set_limiter(WindowLimiter(max_requests=4, window_s=window_s))
        loaded = load_config_text(demo_config(primary.base_url, alt.base_url), source="demo", env=DEMO_ENV)
        sidecar = Sidecar(loaded, observers=[log])
        sock = bind_socket("127.0.0.1", 0)
        server = asyncio.create_task(serve(sidecar, sock))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-the-app-needs-no-real-key", max_retries=0)
        view = _View(log, sidecar, plain=plain or not sys.stdout.isatty())
        try:
            with view:
                for number in range(1, requests + 1):
                    await _one_request(client, log, number, stream=number % 3 == 0)
                    view.refresh()
                    await asyncio.sleep(pace_s)  # pacing, so a person can watch the window run out
        finally:
            await client.close()
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
            await sidecar.aclose()
            sock.close()
    view.summary()
    failed = [row for row in log.rows if row.provider == "error"]
    return 1 if failed else 0


async def _one_request(client: Any, log: DemoLog, number: int, *, stream: bool) -> None:
    row = Row(number, stream)
    log.rows.append(row)
    started = time.perf_counter()
    messages = [{"role": "user", "content": f"Request {number}: say hello"}]
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages, stream=stream
        )
        parsed = raw.parse()
        if stream:
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in parsed if chunk.choices])
        else:
            text = parsed.choices[0].message.content or ""
        row.provider = raw.headers["x-detour-provider"]
        row.model = raw.headers["x-detour-model"]
        row.attempts = raw.headers["x-detour-attempts"]
        row.note = text
    except Exception as exc:  # the demo shows every failure instead of stopping
        row.provider, row.note = "error", f"{type(exc).__name__}: {exc}"
    row.latency_ms = (time.perf_counter() - started) * 1000


class _View:
    """A rich live table when on a terminal, plain lines otherwise (CI, pipes)."""

    def __init__(self, log: DemoLog, sidecar: Sidecar, *, plain: bool) -> None:
        from rich.console import Console

        self.log, self.sidecar, self.plain = log, sidecar, plain
        self.console = Console(soft_wrap=plain)
        self._printed_rows = self._printed_events = 0
        self._live: Any = None

    def __enter__(self) -> _View:
        self.console.print(
            f"[bold]Detour demo[/bold]: {PRIMARY} allows 4 requests per window, then answers 429 with "
            f"Retry-After; {ALTERNATIVE} (Anthropic dialect) takes over inside the same request."
        )
        if not self.plain:
            from rich.live import Live

            self._live = Live(
                self._render(), console=self.console, refresh_per_second=10, get_renderable=self._render
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)

    def refresh(self) -> None:
        if self.plain:
            for text in self.log.events[self._printed_events :]:
                self.console.print(f"  [yellow]{text}[/yellow]", highlight=False)
            for row in self.log.rows[self._printed_rows :]:
                kind = "stream" if row.stream else "json"
                self.console.print(
                    f"#{row.number:<3} {kind:6} → {row.provider:15} {row.model:18} attempts={row.attempts:2} "
                    f"{row.latency_ms:6.1f} ms  {row.note[:48]}",
                    highlight=False,
                )
            self._printed_rows, self._printed_events = len(self.log.rows), len(self.log.events)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(title="Requests through Detour (official openai SDK)", expand=True)
        for column in ("#", "kind", "served by", "upstream model", "attempts", "ms", "answer"):
            table.add_column(column)
        for row in self.log.rows[-12:]:
            colour = "green" if row.provider == PRIMARY else "cyan" if row.provider == ALTERNATIVE else "red"
            table.add_row(
                str(row.number),
                "stream" if row.stream else "json",
                f"[{colour}]{row.provider}[/{colour}]",
                row.model,
                row.attempts,
                f"{row.latency_ms:.1f}",
                row.note[:40],
            )
        router = self.sidecar.router
        state = describe_state(self.sidecar.current_table(), router.limits, router.clock)
        limits = [
            f"{item['provider']} / {item['model']}: {item['remaining_s']:.1f} s left"
            for item in state["rate_limited"]
        ]
        status = (
            "[red]LIMITED[/red] " + "; ".join(limits) if limits else "[green]all providers available[/green]"
        )
        events = "\n".join(self.log.events[-6:]) or "(no events yet)"
        return Group(table, f"Rate limits: {status}", f"[yellow]{events}[/yellow]")

    def summary(self) -> None:
        from rich.table import Table

        self.refresh()
        table = Table(title="Summary")
        table.add_column("what")
        table.add_column("count", justify="right")
        for provider_id in (PRIMARY, ALTERNATIVE):
            table.add_row(f"served by {provider_id}", str(self.log.served.get(provider_id, 0)))
        table.add_row("429s seen by the sidecar", str(self.log.rate_limits))
        table.add_row("failovers inside a request", str(self.log.failovers))
        table.add_row(f"returns to {PRIMARY} after its limit expired", str(self.log.returns_to_primary))
        table.add_row(
            "requests that failed for the app", str(sum(row.provider == "error" for row in self.log.rows))
        )
        self.console.print(table)
