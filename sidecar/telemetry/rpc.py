"""The SERVER span of a gRPC call (docs/grpc.md, "Telemetry"): the same `RequestSpan` as an HTTP
request's — attempts as its children, rate limits and failovers as its events, metrics settled at
its end — named `{service}/{method}` and described by the OpenTelemetry RPC conventions instead of
the HTTP ones. Kept apart from `hooks` so the HTTP path's code is untouched by it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Status, StatusCode

from sidecar.telemetry.hooks import DetourTracing, RequestSpan, start_server_span

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Event

    from sidecar.providers.client import ClientHeaders
    from sidecar.telemetry.spans import OpenSpan

log = logging.getLogger("detour.telemetry")

# gRPC status codes (their numbers: the protocol's, grpc.StatusCode) a server span counts as its
# own error, as the RPC conventions say; the others are the client's (NOT_FOUND, INVALID_ARGUMENT,
# RESOURCE_EXHAUSTED, ...) or no error at all.
CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}  # fmt: skip
SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})
CANCELLED = 1


def start_rpc(owner: DetourTracing, service: str, method: str, headers: ClientHeaders) -> RpcSpan:
    """Always returns a trace (the ingress ends it); without a span if starting one failed."""
    return RpcSpan(owner, start_server_span(owner.spans, f"{service}/{method}", headers), service, method)


class RpcSpan(RequestSpan):
    """`RequestTrace` for one gRPC call; `end(code)` takes the gRPC status code it ended with."""

    __slots__ = ("_method", "_service")

    def __init__(self, owner: DetourTracing, span: OpenSpan | None, service: str, method: str) -> None:
        super().__init__(owner, span, f"/{service}/{method}")
        self._service = service
        self._method = method

    def _answered(self, status: int | None) -> bool:
        return status == 0  # OK

    def _finish_span(self, span: OpenSpan, status: int | None, events: list[Event]) -> None:
        code = CANCELLED if status is None else status
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": self._service,
            "rpc.method": self._method,
            "rpc.grpc.status_code": code,
        }
        self._add_routing_facts(attributes)
        outcome = Status()
        if code in SERVER_ERRORS:
            name = CODE_NAMES[code]
            attributes["error.type"] = name
            outcome = Status(StatusCode.ERROR, name)
        span.finish(attributes, events, outcome)
