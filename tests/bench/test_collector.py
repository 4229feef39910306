"""`python -m bench.collector` times the garbage collector inside a real `detour serve`; checked here
without wrk: the thresholds it reports are the ones `--gc-threshold` (`DETOUR_GC_THRESHOLD`) set in
that process, and collections under load are timed."""

from __future__ import annotations

import gc
import pathlib

import pytest

from bench.collector import arm, collections_timed, timed_detour
from bench.instructions import post_chat_completions
from bench.procs import upstream

PYTHONS = gc.get_threshold()[0]  # 700 up to Python 3.13


@pytest.mark.parametrize(
    ("setting", "expected"), [("0", PYTHONS), ("1", 1), ("3000", 3000)], ids=["python's", "1", "3000"]
)
def test_the_served_process_runs_with_the_threshold_it_was_given(
    setting: str, expected: int, tmp_path: pathlib.Path
) -> None:
    with upstream() as up, timed_detour(up.url, tmp_path, None, {"DETOUR_GC_THRESHOLD": setting}) as running:
        arm(tmp_path)
        post_chat_completions(running.port, 100, 4)
        timed = collections_timed(tmp_path)
    assert timed["thresholds"][0] == expected
    for _, seconds, longest in timed["generations"].values():
        assert 0 <= longest <= seconds  # the longest collection is one of those timed
    if expected == 1:  # a collection after every allocation: the timing must have seen them
        assert timed["generations"][0][0] > 100
