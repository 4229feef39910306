"""The atheris targets in fuzz/ run for a few seconds each: they start, replay their seed corpus,
fuzz without finding anything and report a meaningful number of runs. Longer runs: fuzz/README.md.

Each run works on a copy of the seed corpus in a temporary directory (libFuzzer adds the inputs it
finds to the corpus directory it is given) and in that directory as its working directory, where a
crash file would land, so the repository is never modified."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SECONDS = 3
# The targets do about 1,500 (SSE) and 50,000 (requests) runs a second on the CI machine. The floor
# is far below: it only catches a target that fuzzes nothing (stuck in one input, or exiting after
# the seed corpus) or one so slow that a few seconds test nothing.
MIN_RUNS = 1_000
_DONE = re.compile(rb"^Done (\d+) runs in \d+ second", re.MULTILINE)


def fuzz_briefly(target: str, work: Path) -> subprocess.CompletedProcess[bytes]:
    corpus = work / "corpus"
    shutil.copytree(FUZZ / "corpus" / target, corpus)
    command = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        str(corpus),
        f"-dict={FUZZ / f'{target}.dict'}",
        f"-max_total_time={SECONDS}",
        f"-artifact_prefix={work}{os.sep}",
    ]
    # Not measured by coverage (`patch = ["subprocess"]` would start it in the child through this
    # variable): libFuzzer ends the process with exit(), before coverage's atexit handler saves
    # anything, so the measurement would only halve the runs.
    env = {name: value for name, value in os.environ.items() if name != "COVERAGE_PROCESS_CONFIG"}
    return subprocess.run(command, cwd=work, env=env, capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("target", ["requests", "sse"])
def test_a_brief_fuzz_run_replays_the_seed_corpus_and_finds_nothing(target: str, tmp_path: Path) -> None:
    result = fuzz_briefly(target, tmp_path)

    log = result.stderr.decode(errors="replace")
    assert result.returncode == 0, log[-6000:]
    assert not list(tmp_path.glob("crash-*")), log[-6000:]
    seeds = len(list((FUZZ / "corpus" / target).iterdir()))
    assert f"{seeds} files found in" in log, log[:3000]
    done = _DONE.search(result.stderr)
    assert done is not None, log[-3000:]
    assert int(done.group(1)) >= MIN_RUNS, log[-3000:]
