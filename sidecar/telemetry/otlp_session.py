"""The `requests` session Detour's OTLP/HTTP exporters (spans and metrics) send with."""

from __future__ import annotations

import os
from typing import Any, Literal

import requests

_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"


def requests_session(signal: Literal["TRACES", "METRICS"]) -> requests.Session | None:
    """The session for the exporter of `signal` (`TRACES`, `METRICS`): one that reads the
    environment once (`EnvironmentOnce`), unless a credential provider
    (`OTEL_PYTHON_EXPORTER_OTLP_HTTP_[<signal>_]CREDENTIAL_PROVIDER`) is to give the library its own."""
    signal_provider = f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER"
    if os.environ.get(_CREDENTIAL_PROVIDER) or os.environ.get(signal_provider):
        return None
    return EnvironmentOnce()


class EnvironmentOnce(requests.Session):
    """A session that looks up the environment's proxy and CA bundle settings (`HTTPS_PROXY`,
    `NO_PROXY`, `REQUESTS_CA_BUNDLE`, ...) once per URL instead of for every request: `requests`
    walks and decodes the whole of `os.environ` twice per request, here on an exporter's thread
    under the interpreter's lock — for a batch of spans, as long as joining the batch itself
    (docs/benchmarks.md). A sidecar's environment does not change after it starts. And a CA file
    the exporter was given is trusted over the environment's bundle (docs/telemetry.md)."""

    def __init__(self) -> None:
        super().__init__()
        self._settled: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(
        self,
        url: str,
        proxies: dict[str, str] | None,
        stream: bool | None,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        if verify is None and isinstance(self.verify, str):
            # `OTEL_EXPORTER_OTLP_*CERTIFICATE` (the library puts it in `verify`) is what the
            # exporter was told to trust; `requests` alone would let `REQUESTS_CA_BUNDLE` win.
            verify = self.verify
        if proxies or not self.trust_env:  # proxies given for this request: not remembered
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        # The session's own settings are part of the key, so setting them later still counts.
        key = (url, stream, verify, cert, self.stream, self.verify, self.cert, *self.proxies.items())
        try:
            settled = self._settled.get(key)
        except TypeError:  # an unhashable setting (a list as `cert`): as `requests` does
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if settled is None:
            if len(self._settled) >= 8:  # an exporter sends to one URL
                self._settled.clear()
            settled = super().merge_environment_settings(url, {}, stream, verify, cert)
            self._settled[key] = settled
        return {**settled, "proxies": dict(settled["proxies"])}  # `requests` may change its copy
