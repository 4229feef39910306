"""`detour simulate`: one simulated provider as a long-running server, to try Detour in a cluster
without API keys or spend (docs/kubernetes.md runs two of them as Deployments).

It answers like the real API (status codes, error bodies, `retry-after` and rate-limit headers,
SSE framing); with `--limit N --window S` it admits N requests per S-second window and answers
429 with `Retry-After` beyond that, so a failover and the return to the primary can be watched.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from sidecar.simulate import SimulatedProvider, WindowLimiter

log = logging.getLogger("detour.simulate")


async def run_simulator(
    *, dialect: str, host: str, port: int, name: str, limit: int | None, window_s: float, api_key: str | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sim = SimulatedProvider(
        "anthropic" if dialect == "anthropic" else "openai",
        name=name,
        reply_text=f"Hello from {name}.",
        api_key=api_key,
        host=host,
        port=port,
    )
    if limit is not None:
        sim.set_limiter(WindowLimiter(max_requests=limit, window_s=window_s))
    async with sim:
        quota = f", {limit} requests per {window_s:g} s" if limit is not None else ""
        log.info("simulated %s provider %r serving on %s%s", dialect, name, sim.base_url, quota)
        await stop.wait()
    return 0
