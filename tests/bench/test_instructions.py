"""`python -m bench.instructions` reads callgrind's per-thread dumps; what it reads is checked here
(valgrind itself is not needed by the test suite)."""

from __future__ import annotations

import pathlib

from bench.instructions import BY_SIZE_ONLY, _total


def test_a_dump_gives_its_summary_and_an_empty_thread_gives_zero(tmp_path: pathlib.Path) -> None:
    dump = tmp_path / "callgrind.detour.1-01"
    dump.write_text("version: 1\nevents: Ir\nsummary: 1548318686\ntotals: 1548318686\n")
    assert _total(dump) == 1_548_318_686
    idle = tmp_path / "callgrind.detour.1-03"
    idle.write_text("version: 1\nevents: Ir\n")
    assert _total(idle) == 0


def test_spans_leave_in_full_batches_only_while_counting() -> None:
    # A clock-driven export under valgrind's slowdown would be charged to far fewer requests.
    assert int(BY_SIZE_ONLY["OTEL_BSP_SCHEDULE_DELAY"]) >= 60_000
    assert int(BY_SIZE_ONLY["OTEL_METRIC_EXPORT_INTERVAL"]) >= 60_000
