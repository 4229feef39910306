"""The full run's report: the gRPC `Proxy` runs sit next to the HTTP plain runs, and a results file
without them (an older run, `--no-grpc`, the floor stack) still renders."""

from __future__ import annotations

import json
from typing import Any

from bench.__main__ import RESULTS
from bench.full import GRPC_RUNS, derive_metrics
from bench.report import render_markdown


def _with_grpc_runs(results: dict[str, Any]) -> dict[str, Any]:
    """A results file with gRPC runs made from the HTTP plain runs they mirror."""
    runs = results["main"]["runs"]
    client = {"client_cpu_s": 1.0, "warmup_calls": 32, "channels": 1}
    grpc_runs = {
        name: {**runs[http], "baseline": http, "through": {**runs[http]["through"], **client}}
        for name, http, _, _ in GRPC_RUNS
    }
    results = {**results, "grpc": {"idle_rss_mib": 75.0, "runs": grpc_runs}}
    return results | {"metrics": derive_metrics(results, results["settings"]["events"])}


def test_grpc_proxy_rows_follow_the_http_plain_rows() -> None:
    stored = json.loads((RESULTS / "latest.json").read_text())
    markdown = render_markdown(_with_grpc_runs({k: v for k, v in stored.items() if k != "grpc"}))
    rows = [line.split(" | ")[0][2:] for line in markdown.splitlines() if line.startswith("| ")]
    plain = [name for name in rows if name.startswith("openai-")]
    after_plain = rows[rows.index(plain[-1]) + 1 :][: len(GRPC_RUNS)]
    assert after_plain == [name for name, *_ in GRPC_RUNS]
    assert "| gRPC `Gateway.Proxy` next to HTTP" in markdown
    without = {k: v for k, v in stored.items() if k != "grpc"}
    assert "gRPC `Gateway.Proxy`: not measured" in render_markdown(without)
