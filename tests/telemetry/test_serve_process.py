"""`detour serve` as users run it: telemetry from the environment, `--metrics-port`, and what is still
buffered exported when the process is told to stop."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import signal
import sys

import httpx

from sidecar.simulate import RateLimit, SimulatedProvider
from tests.support.running import pair_config
from tests.telemetry.receivers import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, OtlpGrpcReceiver, only_point
from tests.telemetry.traced import AUTH, CHAT, SECRET


async def _wait_for_lines(stream: asyncio.StreamReader, *patterns: str) -> list[re.Match[str]]:
    """Read the process's log until every pattern has matched once (it says when it serves)."""
    found: dict[str, re.Match[str]] = {}
    seen: list[str] = []
    async with asyncio.timeout(15):
        while len(found) < len(patterns):
            line = (await stream.readline()).decode()
            assert line, "the process ended early:\n" + "".join(seen)
            seen.append(line)
            for pattern in patterns:
                match = re.search(pattern, line)
                if match and pattern not in found:
                    found[pattern] = match
    return [found[pattern] for pattern in patterns]


async def test_detour_serve_exports_over_otlp_and_serves_prometheus_metrics(tmp_path: pathlib.Path) -> None:
    with OtlpGrpcReceiver() as receiver:
        async with (
            SimulatedProvider("openai", name="primary") as primary,
            SimulatedProvider("openai", name="backup") as backup,
        ):
            primary.script(RateLimit(retry_after="30"))
            config = tmp_path / "routes.yaml"
            config.write_text(pair_config(primary, backup))
            env = {
                **os.environ,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
                "K8S_POD_NAME": "shop-7d9f",
            }
            process = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "sidecar.cli.main", "serve", "--config", str(config)],
                *["--port", "0", "--metrics-port", "0", "--metrics-host", "127.0.0.1"],
                env=env,
                stderr=asyncio.subprocess.PIPE,
            )
            assert process.stderr is not None
            try:
                scrape, serving = await _wait_for_lines(
                    process.stderr,
                    r"Prometheus scrape on (http://\S+/metrics)",
                    r"detour serving on (http://\S+)",
                )
                async with httpx.AsyncClient(timeout=10) as client:
                    answer = await client.post(serving[1] + "/v1/chat/completions", json=CHAT, headers=AUTH)
                    metrics = (await client.get(scrape[1])).text
            finally:
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(15):
                    _, log = await process.communicate()
    assert process.returncode == 0
    assert answer.status_code == 200
    assert 'detour_rate_limit_events_total{model="gpt-4o"' in metrics
    spans = receiver.received.spans()
    assert sorted(span.kind for span in spans) == [SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_CLIENT]
    assert {span.resource["k8s.pod.name"] for span in spans} == {"shop-7d9f"}
    assert only_point(receiver.received.points(), "detour.failovers").value == 1
    assert SECRET not in log.decode()
