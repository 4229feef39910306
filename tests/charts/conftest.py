"""Fixtures of the chart tests: one helm for the session (the renders are cached per module)."""

from __future__ import annotations

import pytest

from tests.charts.helm import Helm, find_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(find_helm(), tmp_path_factory.mktemp("helm-home"))
