"""The Prometheus scrape endpoint (`--metrics-port`), and the Grafana dashboard's queries against it:
every metric and label the dashboard uses must exist under the name the exporter renders."""

from __future__ import annotations

import json
import pathlib
import re

import httpx
import pytest_asyncio

from sidecar.simulate import RateLimit, SimulatedProvider
from tests.support.running import pair_config
from tests.telemetry.traced import AUTH, CHAT, traced_sidecar

DASHBOARD = (
    pathlib.Path(__file__).resolve().parents[2] / "manifests" / "observability" / "grafana-dashboard.json"
)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", re.MULTILINE)
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
_BY = re.compile(r"by \(([^)]*)\)")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scrape() -> dict[str, set[str]]:
    """Metric sample names after a 429 failover and a stream, each with the label names it carries."""
    async with (
        SimulatedProvider("openai", name="primary") as primary,
        SimulatedProvider("openai", name="backup") as backup,
    ):
        primary.script(RateLimit(retry_after="30"))
        text = pair_config(primary, backup)
        async with traced_sidecar(text, {}, metrics_port=0) as detour, httpx.AsyncClient() as client:
            await client.post(
                detour.url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH
            )
            address = detour.telemetry.metrics_address
            assert address is not None
            response = await client.get(f"http://{address[0]}:{address[1]}/metrics")
    assert response.status_code == 200
    samples: dict[str, set[str]] = {}
    for name, labels in _SAMPLE.findall(response.text):
        samples.setdefault(name, set()).update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', labels))
    return samples


def test_the_scrape_endpoint_serves_the_rate_limit_metrics_under_prometheus_names(
    scrape: dict[str, set[str]],
) -> None:
    assert {"provider", "model", "reason"} <= scrape["detour_rate_limit_events_total"]
    assert {"from", "to", "reason"} <= scrape["detour_failovers_total"]
    assert "provider" in scrape["detour_rate_limit_active"]
    assert "le" in scrape["detour_rate_limit_backoff_seconds_bucket"]
    assert {"gen_ai_request_model", "gen_ai_provider_name"} <= scrape[
        "gen_ai_client_operation_duration_seconds_bucket"
    ]
    assert "gen_ai_token_type" in scrape["gen_ai_client_token_usage_bucket"]
    assert "gen_ai_client_operation_time_to_first_chunk_seconds_count" in scrape


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queries += [
        variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable
    ]
    return queries


def test_the_dashboard_has_the_panels_the_issue_asks_for() -> None:
    titles = " / ".join(panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"]).lower()
    for wanted in ("rate-limit events by provider", "failovers", "active limits", "duration", "tokens"):
        assert wanted in titles


def test_every_metric_and_label_the_dashboard_queries_is_in_the_scrape(
    scrape: dict[str, set[str]],
) -> None:
    queries = _queries()
    assert len(queries) >= 12
    for query in queries:
        metrics = _SELECTOR.findall(query) + re.findall(r"label_values\((\w+),", query)
        assert metrics, query
        labels = set().union(*(scrape.get(metric, set()) for metric in metrics))
        for metric in metrics:
            assert metric in scrape, f"{metric} (in {query!r}) is not exported"
        for grouping in _BY.findall(query):
            for label in (part.strip() for part in grouping.split(",")):
                assert label in labels, f"label {label} (in {query!r}) is not on {metrics}"
        for label in re.findall(r"[{,]\s*([a-zA-Z_]\w*)\s*(?:=~|!=|=)", query):
            assert label in labels, f"label {label} (in {query!r}) is not on {metrics}"
