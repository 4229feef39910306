"""`detour serve`'s interpreter settings: start-up objects frozen out of the GC, a short thread
switch interval (docs/benchmarks.md, "Telemetry on")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.cli.main import build_parser, main


def test_the_gc_freeze_is_on_unless_turned_off_by_flag_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DETOUR_GC_FREEZE", raising=False)
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).gc_freeze is True
    assert build_parser().parse_args(["serve", "--config", "r.yaml", "--no-gc-freeze"]).gc_freeze is False
    monkeypatch.setenv("DETOUR_GC_FREEZE", "0")
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).gc_freeze is False
    assert build_parser().parse_args(["serve", "--config", "r.yaml", "--gc-freeze"]).gc_freeze is True


def test_a_gc_freeze_variable_that_is_neither_on_nor_off_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETOUR_GC_FREEZE", "maybe")

    assert main(["serve", "--config", "r.yaml"]) == 2
    assert "DETOUR_GC_FREEZE: expected 1 or 0" in capsys.readouterr().err
    assert build_parser().parse_args(["serve", "--config", "r.yaml", "--no-gc-freeze"]).gc_freeze is False
    monkeypatch.setenv("DETOUR_GC_FREEZE", " Off ")
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).gc_freeze is False


def test_the_switch_interval_comes_from_the_flag_else_the_environment_else_1_ms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DETOUR_SWITCH_INTERVAL_MS", raising=False)
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).switch_interval_ms == 1.0
    monkeypatch.setenv("DETOUR_SWITCH_INTERVAL_MS", "5")
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).switch_interval_ms == 5.0
    flag = ["serve", "--config", "r.yaml", "--switch-interval-ms", "0.5"]
    assert build_parser().parse_args(flag).switch_interval_ms == 0.5


def test_freezing_moves_every_live_object_out_of_the_collectors_reach() -> None:
    # In a child: a frozen test process would never collect its own cyclic garbage again.
    code = (
        "import gc; from sidecar.cli.serve import freeze_startup_objects; "
        "before = gc.get_freeze_count(); freeze_startup_objects(); "
        "print(before, gc.get_freeze_count(), sum(gc.get_count()))"
    )
    before, frozen, tracked = map(int, subprocess.check_output([sys.executable, "-c", code]).split())
    assert before == 0
    assert frozen > 10_000, "start-up objects (modules, functions) are frozen"
    assert tracked < 100, "and nothing is left for the next collection to walk"


@pytest.mark.parametrize("text", ["fast", "-1", "inf"])
def test_a_switch_interval_that_is_not_milliseconds_is_a_usage_error(
    text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETOUR_SWITCH_INTERVAL_MS", text)  # from the environment too, not a traceback
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--config", "r.yaml"])
    assert exited.value.code == 2
    assert "--switch-interval-ms: expected milliseconds (0: off)" in capsys.readouterr().err


def test_the_gc_threshold_comes_from_the_flag_else_the_environment_else_3000(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DETOUR_GC_THRESHOLD", raising=False)
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).gc_threshold == 3000
    monkeypatch.setenv("DETOUR_GC_THRESHOLD", "0")  # Python's own
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).gc_threshold == 0
    flag = ["serve", "--config", "r.yaml", "--gc-threshold", "5000"]
    assert build_parser().parse_args(flag).gc_threshold == 5000


@pytest.mark.parametrize("text", ["many", "-1", "1.5"])
def test_a_gc_threshold_that_is_not_a_count_is_a_usage_error(
    text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETOUR_GC_THRESHOLD", text)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--config", "r.yaml"])
    assert exited.value.code == 2
    assert "--gc-threshold: expected a whole number (0: off)" in capsys.readouterr().err


def test_the_youngest_generation_threshold_changes_and_the_older_ones_stay_pythons() -> None:
    # In a child: the test process keeps Python's thresholds.
    code = (
        "import gc; from sidecar.cli.serve import collect_young_objects_after; "
        "before = gc.get_threshold(); collect_young_objects_after(3000); print(*before, *gc.get_threshold())"
    )
    numbers = list(map(int, subprocess.check_output([sys.executable, "-c", code]).split()))
    before, after = numbers[: len(numbers) // 2], numbers[len(numbers) // 2 :]
    assert before[0] != 3000
    assert after == [3000, *before[1:]]
