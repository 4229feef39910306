"""The `detour` command as users run it: validate's exit codes and output, serve in a real process."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import httpx
import pytest

from sidecar.cli.main import build_parser, main
from sidecar.ingress.http_protocol import DEFAULT_MAX_HEADER_BYTES

SEED = pathlib.Path(__file__).resolve().parent.parent / "config" / "fixtures" / "seed-routing-strategies.yaml"
SEED_ENV = {
    "OPENAI_API_KEY": "sk-1",
    "OPENAI_BACKUP_KEY": "sk-2",
    "ANTHROPIC_API_KEY": "sk-3",
    "ANTHROPIC_BACKUP_KEY": "sk-4",
    "EMERGENCY_API_KEY": "sk-5",
}


def test_validate_accepts_the_seed_config_and_names_the_ignored_sections(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SEED_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["validate", str(SEED)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out
    assert "session_recording" in out
    assert "routing.health_monitor" in out


def test_validate_prints_every_problem_with_its_path_and_exits_1(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        """
providers:
  openai-backup: {type: openai, api_key: sk-x, timeout_sec: 3}
routing:
  rules:
    - name: r
      matcher: {model_pattern: "^gpt-("}
      strategy: {type: limits-alternative, primary_providers: [openai-bakup]}
"""
    )
    assert main(["validate", str(config)]) == 1
    out = capsys.readouterr().out
    assert "providers.openai-backup.timeout_sec: unknown key 'timeout_sec'" in out
    assert "did you mean 'timeout_secs'" in out
    assert "routing.rules[0].matcher.model_pattern" in out


def test_validate_of_a_value_its_yaml_tag_cannot_convert_names_it_and_never_prints_it(
    tmp_path: pathlib.Path,
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        """
providers:
  p:
    type: openai
    api_key: !!int sk-secret123
routing:
  rules:
    - {name: all, matcher: {always: true}, primary: p}
"""
    )

    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "error: providers.p.api_key: the value at line 5, column 14 is not a valid !!int" in result.stdout
    assert f"{config}: 1 error(s)" in result.stdout
    assert "sk-secret123" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_validate_of_a_missing_file_exits_1(tmp_path: pathlib.Path) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 1


def test_serve_starts_a_real_process_that_answers_health_and_readiness(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        """
providers:
  p: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "$KEY"}
routing:
  rules:
    - {name: all, matcher: {always: true}, primary: p}
"""
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "KEY": "sk-secret-in-env"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli.main", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the process says when it serves; no polling
            if "detour serving on" in line:
                break
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready"
            refused = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
            assert refused.status_code == 502, "the provider's port is closed: every candidate failed"
            assert "sk-secret-in-env" not in client.get("/admin/state").text
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "sk-secret-in-env" not in stderr


def test_the_header_cap_comes_from_the_flag_else_the_environment_else_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DETOUR_MAX_HEADER_BYTES", raising=False)
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).max_header_bytes is None
    assert DEFAULT_MAX_HEADER_BYTES == 64 * 1024
    monkeypatch.setenv("DETOUR_MAX_HEADER_BYTES", "8192")
    assert build_parser().parse_args(["serve", "--config", "r.yaml"]).max_header_bytes == 8192
    flag = ["serve", "--config", "r.yaml", "--max-header-bytes", "4096"]
    assert build_parser().parse_args(flag).max_header_bytes == 4096


@pytest.mark.parametrize(("env", "flag"), [("0", None), ("64k", None), (None, "-1"), (None, "lots")], ids=str)
def test_a_header_cap_that_is_not_a_positive_integer_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: str | None, flag: str | None
) -> None:
    if env is None:
        monkeypatch.delenv("DETOUR_MAX_HEADER_BYTES", raising=False)
    else:
        monkeypatch.setenv("DETOUR_MAX_HEADER_BYTES", env)
    args = ["serve", "--config", "r.yaml"] + (["--max-header-bytes", flag] if flag else [])

    with pytest.raises(SystemExit) as exited:
        main(args)

    assert exited.value.code == 2
    assert "--max-header-bytes: expected a positive number of bytes" in capsys.readouterr().err


def test_the_demo_shows_failover_and_recovery_through_the_openai_sdk() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli.main",
            "demo",
            "--plain",
            "--requests",
            "16",
            "--pace",
            "0.1",
            "--window",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "429 from openai-primary" in out
    assert "failover openai-primary → anthropic-alt" in out
    assert "back on openai-primary" in out
    assert "→ anthropic-alt" in out


@pytest.mark.parametrize(
    ("flag", "env", "text", "expected"),
    [
        ("--port", None, "70000", "a port from 0 (any free one) to 65535"),
        ("--port", None, "http", "a port from 0 (any free one) to 65535"),
        ("--health-port", "DETOUR_HEALTH_PORT", "0", "a port from 1 to 65535"),
        ("--health-port", "DETOUR_HEALTH_PORT", "eighty", "a port from 1 to 65535"),
        ("--metrics-port", "DETOUR_METRICS_PORT", "-1", "a port from 0 (any free one) to 65535"),
        ("--metrics-port", "DETOUR_METRICS_PORT", "9090x", "a port from 0 (any free one) to 65535"),
    ],
)
def test_a_port_that_is_not_one_is_a_usage_error_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str, env: str | None,
    text: str, expected: str,
) -> None:  # fmt: skip
    attempts = [["serve", "--config", "r.yaml", flag, text]]
    if env is not None:  # from the environment too: a usage error, not a traceback
        monkeypatch.setenv(env, text)
        attempts.append(["serve", "--config", "r.yaml"])
    for args in attempts:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(args)
        assert exited.value.code == 2
        assert f"{flag}: expected {expected}, got {text!r}" in capsys.readouterr().err


def test_ports_come_from_the_flag_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETOUR_HEALTH_PORT", "8083")
    monkeypatch.setenv("DETOUR_METRICS_PORT", "")  # set but empty: not asked for
    parsed = build_parser().parse_args(["serve", "--config", "r.yaml", "--port", "0"])
    assert (parsed.port, parsed.health_port, parsed.metrics_port) == (0, 8083, None)
    parsed = build_parser().parse_args(["serve", "--config", "r.yaml", "--health-port", "9000"])
    assert (parsed.port, parsed.health_port) == (None, 9000)
