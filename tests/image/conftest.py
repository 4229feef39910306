"""Session fixtures: the tools, podman's environment, and Detour's image, built once per test run."""

from __future__ import annotations

import pytest

from tests.image.images import build_detour_image, ensure_base_image
from tests.image.tools import ensure_tools, podman_environment


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ensure_tools()
    return podman_environment(tmp_path_factory.mktemp("containers-conf"))


@pytest.fixture(scope="session")
def detour_image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    base = ensure_base_image(podman_env, tmp_path_factory.mktemp("debian-base"))
    return build_detour_image(podman_env, base)
