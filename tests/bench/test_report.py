"""The full run's report: the gRPC `Proxy` runs sit next to the HTTP plain runs, the telemetry runs
(`…+otel`) right after the runs they mirror with their own targets table, and a results file without
them (an older run, `--no-grpc`, `--no-telemetry`, the floor stack) still renders."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bench.__main__ import RESULTS
from bench.full import GRPC_RUNS, TELEMETRY_RUNS, derive_metrics
from bench.report import NOT_MEASURED, TELEMETRY_TARGETS, TIMES, failures, render_markdown

# What a results file held before every scenario was measured with telemetry on (only the plain runs).
OLDER_TELEMETRY_RUNS = ("openai-c1", "openai-c16-paced", "openai-c16", "openai-c64")
OLDER_TELEMETRY_METRICS = (
    "added_p50_c1_ms", "added_p99_c1_ms", "added_p50_paced_ms", "added_p99_paced_ms", "paced_rps",
    "added_p50_c16_ms", "added_p99_c16_ms", "rps_c16", "rps_c64", "cpu_us_per_request", "idle_rss_mib",
    "ready_s",
)  # fmt: skip


def _stored() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RESULTS / "latest.json").read_text())
    return loaded


def _rederived(results: dict[str, Any]) -> dict[str, Any]:
    return results | {"metrics": derive_metrics(results, results["settings"]["events"])}


def _with_grpc_runs(results: dict[str, Any]) -> dict[str, Any]:
    """A results file with gRPC runs made from the HTTP plain runs they mirror."""
    runs = results["main"]["runs"]
    client = {"client_cpu_s": 1.0, "warmup_calls": 32, "channels": 1}
    grpc_runs = {
        name: {**runs[http], "baseline": http, "through": {**runs[http]["through"], **client}}
        for name, http, _, _ in GRPC_RUNS
    }
    return _rederived({**results, "grpc": {"idle_rss_mib": 75.0, "runs": grpc_runs}})


def _with_telemetry_runs(results: dict[str, Any], cpu_factor: float, rss_peak: float) -> dict[str, Any]:
    """A results file with a telemetry run for every scenario: the main run, `cpu_factor` times its CPU."""
    runs = copy.deepcopy(results["main"]["runs"])
    telemetry_runs = {name: runs[name] for name, *_ in TELEMETRY_RUNS}
    for run in telemetry_runs.values():
        run["detour_cpu_us_per_request"] *= cpu_factor
    telemetry = {
        "ready_s": 0.8,
        "idle_rss_mib": 69.0,
        "runs": telemetry_runs,
        "load_rss_peak_mib": rss_peak,
        "load_rss_mib": rss_peak - 1,
        "exports": {"/v1/traces": {"requests": 40, "bytes": 1}, "/v1/metrics": {"requests": 12, "bytes": 1}},
        "available": True,
    }
    return _rederived({**results, "telemetry": telemetry})


def _older(results: dict[str, Any]) -> dict[str, Any]:
    """`results` as an older run wrote it: telemetry on for the plain runs only, fewer metrics."""
    older = copy.deepcopy(results)
    telemetry = older["telemetry"]
    telemetry["runs"] = {name: telemetry["runs"][name] for name in OLDER_TELEMETRY_RUNS}
    telemetry.pop("load_rss_peak_mib", None)
    telemetry.pop("peak_rss_hwm_mib", None)
    metrics = older["metrics"]["telemetry"]
    older["metrics"]["telemetry"] = {key: metrics[key] for key in OLDER_TELEMETRY_METRICS}
    return older


def _first_cells(markdown: str) -> list[str]:
    return [line.split(" | ")[0][2:] for line in markdown.splitlines() if line.startswith("| ")]


def test_grpc_proxy_rows_follow_the_http_plain_rows() -> None:
    stored = _stored()
    markdown = render_markdown(_with_grpc_runs({k: v for k, v in stored.items() if k != "grpc"}))
    rows = _first_cells(markdown)
    plain = [name for name in rows if name.startswith("openai-")]
    after_plain = rows[rows.index(plain[-1]) + 1 :][: len(GRPC_RUNS)]
    assert after_plain == [name for name, *_ in GRPC_RUNS]
    assert "| gRPC `Gateway.Proxy` next to HTTP" in markdown
    without = {k: v for k, v in stored.items() if k != "grpc"}
    assert "gRPC `Gateway.Proxy`: not measured" in render_markdown(without)


def test_every_scenario_has_a_telemetry_row_right_after_the_run_it_mirrors() -> None:
    results = _with_telemetry_runs(_with_grpc_runs(_stored()), cpu_factor=1.2, rss_peak=80.0)
    rows = _first_cells(render_markdown(results))
    for name, *_ in TELEMETRY_RUNS:
        assert rows[rows.index(name) + 1] == f"{name}+otel"
    assert len(TELEMETRY_RUNS) == 8
    assert {"stream-c16+otel", "failover-c16+otel"} <= set(rows)


def test_telemetry_targets_are_judged_and_unmet_ones_reported() -> None:
    met = _with_telemetry_runs(_stored(), cpu_factor=1.2, rss_peak=80.0)
    on, off = met["metrics"]["telemetry"], met["metrics"]
    assert on["cpu_ratio_vs_off"] == pytest.approx(1.2, rel=1e-3)
    assert on["cpu_us_per_request"] == pytest.approx(1.2 * off["cpu_us_per_request"], rel=1e-3)
    assert on["load_rss_peak_mib"] == 80.0
    assert on["failover_cpu_us_per_request"] == pytest.approx(1.2 * off["failover_cpu_us_per_request"])
    assert on["sse_cpu_us_per_event"] == pytest.approx(1.2 * off["sse_cpu_us_per_event"])
    markdown = render_markdown(met)
    assert "| target with telemetry exporting (OTLP/HTTP to a receiver in its own process) |" in markdown
    ratio = next(line for line in markdown.splitlines() if "over telemetry off" in line)
    assert f"| 1.2 {TIMES} (" in ratio
    assert "µs on /" in ratio
    assert ratio.endswith(f"| ≤ 1.3 {TIMES} | yes |")
    rss = next(
        line
        for line in markdown.splitlines()
        if line.startswith("| RSS peak under load (64") and "90" in line
    )
    assert rss.endswith("| yes |")
    assert NOT_MEASURED not in markdown
    assert not any(line.startswith("with telemetry: Detour CPU") for line in failures(met["metrics"]))

    unmet = _with_telemetry_runs(_stored(), cpu_factor=2.0, rss_peak=95.0)
    found = [line for line in failures(unmet["metrics"]) if line.startswith("with telemetry: ")]
    assert any(f"over telemetry off: 2 {TIMES}" in line for line in found)
    assert any("RSS peak under load" in line for line in found)
    assert render_markdown(unmet).count("**no**") > render_markdown(met).count("**no**")


def test_an_older_results_file_still_renders() -> None:
    results = _older(_with_telemetry_runs(_stored(), cpu_factor=1.2, rss_peak=80.0))
    markdown = render_markdown(results)
    assert NOT_MEASURED in markdown
    assert "An older results file" in markdown
    assert "openai-c64+otel" in markdown
    assert "stream-c1+otel" not in markdown
    targets = [t for t in TELEMETRY_TARGETS if t.metric not in OLDER_TELEMETRY_METRICS]
    assert all(
        not line.startswith(f"with telemetry: {t.label}")
        for t in targets
        for line in failures(results["metrics"])
    )
    # The stored results render whatever their age; a run without telemetry, or with nothing exported, too.
    assert "| run | conns |" in render_markdown(_stored())
    without = {k: v for k, v in _stored().items() if k != "telemetry"}
    without["metrics"] = {k: v for k, v in without["metrics"].items() if k != "telemetry"}
    assert "Telemetry exporting: not measured (`--no-telemetry`)." in render_markdown(without)
    assert not any(line.startswith("with telemetry: ") for line in failures(without["metrics"]))
    silent = copy.deepcopy(results)
    silent["telemetry"] |= {"available": False, "exports": {}}
    del silent["metrics"]["telemetry"]
    assert "Telemetry exporting: **not available**" in render_markdown(silent)


def test_the_cpu_ratio_is_the_median_of_the_pairs_ratios_and_empty_pairs_are_skipped() -> None:
    results = _with_telemetry_runs(_stored(), cpu_factor=1.2, rss_peak=80.0)
    # Ratios 1.5, 1.1 and 1.2: their median is 1.2; the ratio of the medians (330 / 300) would be 1.1.
    pairs = [(100, 150), (300, 330), (400, 480), (0, 200), (250, None)]
    results["telemetry"]["cpu_pairs"] = [{"off_us": off, "on_us": on} for off, on in pairs]
    on = _rederived(results)["metrics"]["telemetry"]
    assert on["cpu_ratio_vs_off"] == pytest.approx(1.2)
    assert (on["cpu_pair_on_us"], on["cpu_pair_off_us"], on["cpu_pairs"]) == (330, 300, 3)
    ratio = next(
        line for line in render_markdown(_rederived(results)).splitlines() if "over telemetry off" in line
    )
    assert "median of the ratios of 3 alternating pairs" in ratio


def test_the_exporting_throughput_is_the_median_of_its_sixteen_connection_runs() -> None:
    results = _with_telemetry_runs(_stored(), cpu_factor=1.2, rss_peak=80.0)
    single = results["telemetry"]["runs"]["openai-c16"]["through"]["rps"]
    rates = [single + 900, single + 800, single - 50]
    results["telemetry"]["cpu_pairs"] = [
        {"off_us": 300, "on_us": 360, "off_rps": 3000, "on_rps": rate} for rate in rates
    ]
    on = _rederived(results)["metrics"]["telemetry"]
    # The single run and three paired runs: the median of four is the mean of the middle two.
    assert on["rps_c16"] == pytest.approx(single + 400)
    assert (on["rps_c16_single"], on["rps_c16_runs"], on["rps_c16_range"]) == (
        single,
        4,
        (single - 50, single + 900),
    )
    row = next(
        line
        for line in render_markdown(_rederived(results)).splitlines()
        if line.startswith("| requests/s on one core, 16 connections | ") and "median of 4 runs" in line
    )
    assert f"the main one, {single:,.0f}" in row


def test_a_failover_cost_below_zero_is_not_met_but_reported_as_runs_that_disagree() -> None:
    results = _stored()
    results["metrics"] = {**results["metrics"], "failover_excess_ms": -0.7}

    [reported] = [line for line in failures(results["metrics"]) if line.startswith("failover cost")]
    row = next(line for line in render_markdown(results).splitlines() if line.startswith("| failover cost"))

    assert "below zero: the two runs it compares disagree" in reported
    assert row.endswith("| **no** |")
