"""Measure the image for docs/image.md: its size, and the time from `podman run` to /readyz 200.

    python -m tests.image.measure [--image localhost/detour:test] [--runs 10]

The image must exist (the image tests build `localhost/detour:test`). Each run starts the container
exactly as the tests do (read-only root, UID 65532, /tmp a tmpfs, host network), polls /readyz
every 20 ms, and removes the container. For comparison it also times `detour serve` with the same
config straight on this machine, without a container.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from tests.image.container import IDLE_CONFIG, seconds_until_ready, start, wait_until_ready
from tests.image.images import IMAGE_TAG
from tests.image.tools import ensure_tools, podman, podman_environment
from tests.support.processes import free_port


def container_start_to_ready(image: str, config: pathlib.Path, env: dict[str, str]) -> float:
    """Seconds from invoking `podman run` to the first /readyz 200."""
    started = time.monotonic()
    container = start(image, config, env)
    try:
        wait_until_ready(container)
        return time.monotonic() - started
    finally:
        container.remove()


def host_start_to_ready(config: pathlib.Path) -> float:
    """The same, for `detour serve` run by this Python without a container."""
    port = free_port()
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "sidecar.cli.main",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if seconds_until_ready(f"http://127.0.0.1:{port}") is None:
            raise RuntimeError(f"detour serve on the host was not ready: {' '.join(command)}")
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=10)


def summary(name: str, measure: Callable[[], float], runs: int) -> dict[str, object]:
    seconds = sorted(measure() for _ in range(runs))
    return {
        "what": name,
        "runs": runs,
        "min_s": round(seconds[0], 3),
        "median_s": round(statistics.median(seconds), 3),
        "max_s": round(seconds[-1], 3),
    }


def image_sizes(image: str, env: dict[str, str]) -> dict[str, object]:
    inspected = json.loads(podman("image", "inspect", image, env=env))[0]
    base = inspected["Labels"].get("org.opencontainers.image.base.name")
    sizes: dict[str, object] = {"image": image, "size_mb": round(inspected["Size"] / 1e6, 1)}
    if base:
        base_size = json.loads(podman("image", "inspect", "--format", "{{.Size}}", base, env=env))
        sizes |= {"base": base, "base_size_mb": round(base_size / 1e6, 1)}
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=IMAGE_TAG)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory() as scratch:
        directory = pathlib.Path(scratch)
        env = podman_environment(directory)
        config = directory / "routes.yaml"
        config.write_text(IDLE_CONFIG)
        config.chmod(0o644)  # read by the container's UID through the bind mount
        print(json.dumps(image_sizes(args.image, env)))
        container_start_to_ready(args.image, config, env)  # warm-up: page cache, podman's own state
        in_container = functools.partial(container_start_to_ready, args.image, config, env)
        print(json.dumps(summary("podman run to /readyz 200", in_container, args.runs)))
        on_host = functools.partial(host_start_to_ready, config)
        print(json.dumps(summary("detour serve on the host", on_host, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
