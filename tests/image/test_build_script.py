"""`scripts/build-image` picks the builder the machine has and passes the same options to each.

The builders here are stand-ins that record how they were called, on a PATH holding nothing else
but the few utilities the script uses; no image is built, so these take a couple of seconds.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from tests.image.images import BUILD_SCRIPT, ROOT

UTILITIES = ("bash", "sed", "date", "dirname", "basename", "cat")
OPTIONAL_UTILITIES = ("git", "timeout")  # the script does without them
RECORDER = """#!/bin/sh
echo "$(basename "$0") $* DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-unset}" >> "$CALLS"
"""
DOCKER_WITHOUT_DAEMON = """#!/bin/sh
if [ "$1" = info ]; then echo "Cannot connect to the Docker daemon" >&2; exit 1; fi
echo "docker $* DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-unset}" >> "$CALLS"
"""


def machine_with(tmp_path: pathlib.Path, **builders: str) -> dict[str, str]:
    """An environment whose PATH has the script's utilities plus the given stand-in builders."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for utility in UTILITIES + OPTIONAL_UTILITIES:
        real = shutil.which(utility)
        if real is not None:
            (bin_dir / utility).symlink_to(real)
        elif utility in UTILITIES:
            pytest.fail(f"{utility} is needed to run scripts/build-image")
    for name, script in builders.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "CALLS": str(tmp_path / "calls")}


def build_image(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD_SCRIPT), *args], env=env, capture_output=True, text=True, check=False, timeout=30
    )


def calls(env: dict[str, str]) -> list[str]:
    path = pathlib.Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def test_the_script_builds_with_buildah_when_the_docker_client_has_no_daemon(tmp_path: pathlib.Path) -> None:
    env = machine_with(tmp_path, docker=DOCKER_WITHOUT_DAEMON, buildah=RECORDER, podman=RECORDER)
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")

    options = ["--tag", "example/detour:1", "--base-image", "mirror/python:3.12-slim"]
    result = build_image(env, *options, "--ca-bundle", str(bundle), "--", "--network", "host")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "example/detour:1\n", "only the tag on stdout"
    [call] = calls(env)
    assert call.startswith("buildah bud --layers --force-rm --tag example/detour:1 ")
    assert "--build-arg BASE_IMAGE=mirror/python:3.12-slim" in call
    assert f"--secret id=ca_bundle,src={bundle}" in call
    assert f"--network host {ROOT} " in call, "extra arguments pass through; the context is the repository"


def test_the_script_builds_with_docker_and_buildkit_when_its_daemon_answers(tmp_path: pathlib.Path) -> None:
    env = machine_with(tmp_path, docker=RECORDER, buildah=RECORDER)

    result = build_image(env, "--ca-bundle", os.devnull)

    assert result.returncode == 0, result.stderr
    docker_info, docker_build = calls(env)
    assert docker_info.startswith("docker info")
    assert docker_build.startswith("docker build --tag ghcr.io/detour-dev/detour:")
    assert "--secret id=ca_bundle,src=/dev/null" in docker_build
    assert docker_build.endswith("DOCKER_BUILDKIT=1"), "RUN --mount needs BuildKit"


def test_the_script_falls_back_to_podman_build_without_docker_or_buildah(tmp_path: pathlib.Path) -> None:
    env = machine_with(tmp_path, podman=RECORDER)

    result = build_image(env, "--tag", "detour:dev")

    assert result.returncode == 0, result.stderr
    [call] = calls(env)
    assert call.startswith("podman build --tag detour:dev ")
    assert "--secret" not in call, "no CA bundle given, none passed"


def test_the_script_says_what_to_install_when_no_builder_is_there(tmp_path: pathlib.Path) -> None:
    env = machine_with(tmp_path, docker=DOCKER_WITHOUT_DAEMON)

    result = build_image(env)

    assert result.returncode == 1
    assert "no Docker daemon answers and neither buildah nor podman is installed" in result.stderr


def test_a_ca_bundle_that_cannot_be_read_is_refused_before_building(tmp_path: pathlib.Path) -> None:
    env = machine_with(tmp_path, buildah=RECORDER)

    result = build_image(env, "--ca-bundle", str(tmp_path / "missing.pem"))

    assert result.returncode == 2
    assert "is not a readable file" in result.stderr
    assert calls(env) == []
