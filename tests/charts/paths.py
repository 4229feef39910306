"""Where the chart and the test inputs are."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parents[1]
CHART = REPO / "charts" / "detour"
VALUES_ALL = HERE / "values-all.yaml"
LIBRARY_CONSUMER = HERE / "library-consumer"
