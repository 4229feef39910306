"""The container tools the image tests need, and the environment that makes podman work here.

CI starts from a clean Debian machine as root, so missing tools are installed with apt-get (like
`bench.wrk.find_wrk`); anywhere else a missing tool fails the tests with the command to run — an image
that was never built must not pass as a skipped test.
"""

from __future__ import annotations

import os
import pathlib
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence

import pytest

TOOLS = ("podman", "buildah", "mmdebstrap", "runc")
APT_PACKAGES = ("podman", "buildah", "mmdebstrap", "runc", "uidmap")
INSTALL_HINT = "apt-get update && apt-get install -y " + " ".join(APT_PACKAGES)

# Plenty for one Python server. Podman lowers its own process limit (to pid_max, 32768 on a machine
# whose `ulimit -Hu` says 96362), so the host's hard limit itself is not safe to ask for.
_NOFILE_WANTED, _NPROC_WANTED = 16384, 4096


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def ensure_tools() -> None:
    """Install podman & co. when they are missing and we may (root, apt-get); fail otherwise."""
    if not missing_tools():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"missing {', '.join(missing_tools())}; install them: {INSTALL_HINT}")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *APT_PACKAGES]):
        result = run(command, apt_env, timeout=900, check=False)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    if missing_tools():
        pytest.fail(f"still missing after apt-get install: {', '.join(missing_tools())}")


def containers_conf() -> str:
    """A containers.conf for podman and buildah: runc, and ulimits this machine can grant.

    Without it podman asks runc for nofile=1048576, beyond the hard limits of machines like CI's, and
    every container fails to start with "error setting rlimit ... operation not permitted".
    """
    nofile = _within(resource.RLIMIT_NOFILE, _NOFILE_WANTED)
    nproc = _within(resource.RLIMIT_NPROC, _NPROC_WANTED)
    return (
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
    )


def _within(limit: int, wanted: int) -> int:
    _soft, hard = resource.getrlimit(limit)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def podman_environment(directory: pathlib.Path) -> dict[str, str]:
    """os.environ plus CONTAINERS_CONF pointing at a fresh containers.conf in `directory`."""
    conf = directory / "containers.conf"
    conf.write_text(containers_conf())
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def run(
    command: Sequence[str], env: Mapping[str, str], *, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure the error carries its output, which is what one needs to see."""
    result = subprocess.run(
        list(command), env=dict(env), capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout}\n"
            f"--- stderr\n{result.stderr}"
        )
    return result


def podman(*args: str, env: Mapping[str, str], timeout: float = 60.0) -> str:
    return run(["podman", *args], env, timeout=timeout).stdout.strip()
