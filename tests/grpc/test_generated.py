"""The checked-in gRPC modules are what `scripts/generate-grpc` makes from proto/ (docs/grpc.md,
"Generated code"): regenerated into a temporary directory, they must be the same files, except for
the version stamps of whichever grpcio-tools is installed. A proto change without regenerating
fails here."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ROOT / "sidecar" / "ingress" / "grpc" / "_generated"
_STAMPS = [
    (re.compile(r"^# Protobuf Python Version: .*$", re.MULTILINE), "# Protobuf Python Version: X"),
    (re.compile(r"^GRPC_GENERATED_VERSION = '.*'$", re.MULTILINE), "GRPC_GENERATED_VERSION = 'X'"),
    (
        re.compile(
            r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"
        ),
        r"\1 X,",
    ),
]


def _unstamped(text: str) -> str:
    for pattern, replacement in _STAMPS:
        text = pattern.sub(replacement, text)
    return text


def test_the_checked_in_modules_are_what_the_protos_generate(tmp_path: pathlib.Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate-grpc"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {path.name: path.read_text() for path in tmp_path.iterdir() if path.is_file()}
    checked_in = {path.name: path.read_text() for path in GENERATED.iterdir() if path.is_file()}
    assert sorted(checked_in) == sorted(fresh), "run scripts/generate-grpc"
    stale = [name for name in fresh if _unstamped(fresh[name]) != _unstamped(checked_in[name])]
    assert stale == [], f"{stale} are stale: run scripts/generate-grpc and commit the result"


def test_the_modules_import_each_other_relatively() -> None:
    for path in GENERATED.glob("*_pb2_grpc.py"):
        text = path.read_text()
        assert "from detour.v1 import" not in text
        assert f"from . import {path.name.removesuffix('_grpc.py')} as" in text


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _floor(dependencies: list[str], name: str) -> tuple[int, ...]:
    [spec] = [dep for dep in dependencies if re.match(rf"{name}\s*>=", dep)]
    return _version(spec.split(">=", 1)[1])


def test_the_dependency_floors_cover_what_the_generated_code_checks_at_import() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    grpc_text = (GENERATED / "gateway_pb2_grpc.py").read_text()
    grpc_needs = _version(re.search(r"GRPC_GENERATED_VERSION = '(.*)'", grpc_text).group(1))  # type: ignore[union-attr]
    pb_text = (GENERATED / "gateway_pb2.py").read_text()
    pb_needs = _version(re.search(r"Protobuf Python Version: (.*)", pb_text).group(1))  # type: ignore[union-attr]
    assert _floor(dependencies, "grpcio") >= grpc_needs
    assert _floor(dependencies, "protobuf") >= pb_needs
