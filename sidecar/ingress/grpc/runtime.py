"""What the gRPC services need from the running sidecar (built in `sidecar.app`), as protocols:
the ingress layer never imports the composition root (docs/architecture.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sidecar.routing.events import ConfigRejected
from sidecar.routing.failover import Router


class ConfigOutcomes(Protocol):
    """A config source's reload status (`kube.reload.ReloadStatus`): who hears its rejections."""

    def subscribe(self, listener: Callable[[ConfigRejected], None]) -> Callable[[], None]: ...


class Runtime(Protocol):
    router: Router

    @property
    def config_source(self) -> ConfigOutcomes | None: ...

    def describe_config_source(self) -> dict[str, Any] | None: ...
