"""Detour in a container the way Kubernetes runs it: read-only root, UID 65532, a writable /tmp.

`podman run --network host` lets the container reach simulated providers on the host's 127.0.0.1
and the tests reach the container's port, with no port mapping to set up.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx

from tests.image.tools import podman, run
from tests.support.processes import free_port

CONFIG_IN_CONTAINER = "/etc/detour/routes.yaml"
READY_DEADLINE_S = 30.0
# Providers nobody calls: enough for a container that only has to start, answer probes and stop.
IDLE_CONFIG = """\
providers:
  nowhere: {type: openai, base_url: "http://127.0.0.1:9/v1"}
routing:
  rules:
    - {name: default, priority: 1, matcher: {always: true}, primary: nowhere}
"""


@dataclass(frozen=True)
class Container:
    name: str
    url: str
    env: Mapping[str, str]

    def exec(self, *argv: str) -> str:
        return podman("exec", self.name, *argv, env=self.env)

    def logs(self) -> str:
        result = run(["podman", "logs", self.name], self.env, check=False)
        return result.stdout + result.stderr  # podman replays the container's stderr on its own

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name, env=self.env)

    def remove(self) -> None:
        run(["podman", "rm", "--force", "--time", "0", self.name], self.env, check=False)


def run_arguments(
    image: str, name: str, *, volumes: Mapping[pathlib.Path, str], command: list[str]
) -> list[str]:
    """What the Kubernetes securityContext and volumes of the sidecar (the contract) amount to."""
    mounts = [f"--volume={host}:{inside}:ro" for host, inside in volumes.items()]
    return [
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--read-only-tmpfs=false",  # podman would add /var/tmp and /run; Kubernetes adds nothing
        "--user",
        "65532:65532",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        "host",
        *mounts,
        image,
        *command,
    ]


def start(image: str, config: pathlib.Path, env: Mapping[str, str]) -> Container:
    """`podman run -d` the image serving `config`; the caller waits for readiness and removes it."""
    port = free_port()
    command = ["serve", "--config", CONFIG_IN_CONTAINER, "--port", str(port)]
    return start_command(image, env, f"http://127.0.0.1:{port}", {config: CONFIG_IN_CONTAINER}, command)


def start_command(
    image: str, env: Mapping[str, str], url: str, volumes: Mapping[pathlib.Path, str], command: list[str]
) -> Container:
    """`podman run -d` the image with `command`, hardened as in a pod; the caller removes it."""
    name = f"detour-test-{uuid.uuid4().hex[:12]}"
    container = Container(name, url, env)
    try:
        podman(*run_arguments(image, name, volumes=volumes, command=command), env=env)
    except BaseException:
        container.remove()  # a failed run may still have created it
        raise
    return container


def seconds_until_ready(url: str, deadline_s: float = READY_DEADLINE_S) -> float | None:
    """Poll `url`/readyz until it answers 200; the seconds that took, or None past the deadline."""
    started = time.monotonic()
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() - started < deadline_s:
            with contextlib.suppress(httpx.TransportError):
                if client.get(url + "/readyz").status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.02)  # between polls of a server that is starting
    return None


def wait_until_ready(container: Container, deadline_s: float = READY_DEADLINE_S) -> float:
    """`seconds_until_ready` for a container; past the deadline, fail with its state and logs."""
    took = seconds_until_ready(container.url, deadline_s)
    if took is None:
        state = container.inspect("{{.State.Status}} (exit code {{.State.ExitCode}})")
        raise AssertionError(
            f"{container.name} not ready in {deadline_s} s, {state}; logs:\n{container.logs()}"
        )
    return took


@contextlib.contextmanager
def serving(image: str, config: pathlib.Path, env: Mapping[str, str]) -> Iterator[Container]:
    """A ready container serving `config`, removed afterwards whatever happens."""
    container = start(image, config, env)
    try:
        wait_until_ready(container)
        yield container
    finally:
        container.remove()
