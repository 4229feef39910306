"""The codebase's own rules, checked with the suite: layers (import-linter), lint (ruff), size."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(pathlib.Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def test_the_layers_of_the_architecture_hold() -> None:
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_the_code_is_ruff_clean(command: list[str]) -> None:
    result = subprocess.run(
        [_tool("ruff"), *command, "sidecar", "tests", "bench", "fuzz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sidecar_package_and_the_benchmark_type_check() -> None:
    command = [sys.executable, "-m", "mypy", "sidecar", "bench"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_grows_past_450_lines() -> None:
    sizes = {path: len(path.read_text().splitlines()) for path in (ROOT / "sidecar").rglob("*.py")}
    too_big = {str(path.relative_to(ROOT)): size for path, size in sizes.items() if size > 450}
    assert too_big == {}


def test_importing_the_package_does_no_io_and_stays_light() -> None:
    heavy = (
        "kubernetes",
        "grpc",
        "openai",
        "anthropic",
        "opentelemetry.sdk",
        "opentelemetry.exporter",
        "google.protobuf",
        "prometheus_client",
    )
    # `detour serve` with telemetry off: the settings say so and nothing of the SDK is loaded.
    code = (
        "import os, sys, sidecar.app, sidecar.cli.main, sidecar.cli.serve\n"
        "from sidecar.telemetry import TelemetrySettings\n"
        "from sidecar.telemetry.runtime import start_telemetry\n"
        "assert start_telemetry(TelemetrySettings.from_env({})) is None\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
