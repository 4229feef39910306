"""The gRPC side of docs/architecture.md §4's error table: what `Chat` / `ChatStream` end with when
they do not answer (docs/grpc.md, "Errors"). Pure: an error in, a status code, a message and the
`google.rpc` details out; `rich_status` packs them as grpcio-status does.

| raised / answered                              | code                | details                      |
|------------------------------------------------|---------------------|------------------------------|
| `AllCandidatesLimited`                         | RESOURCE_EXHAUSTED  | RetryInfo (the soonest expiry) |
| `NoRouteError`                                 | NOT_FOUND           |                              |
| `RequestError` 400 / 413 (bad request, no      | INVALID_ARGUMENT    | the reason in the message    |
| candidate can express it)                      |                     |                              |
| `RequestError` 503 (no config loaded yet)      | UNAVAILABLE         |                              |
| `RequestError` 499 (client went away)          | CANCELLED           |                              |
| `AllCandidatesFailed`                          | UNAVAILABLE         | RetryInfo when one comes back|
| a provider's 401 passed back                   | UNAUTHENTICATED     | the provider's message       |
| a provider's 403 passed back                   | PERMISSION_DENIED   | the provider's message       |
| a provider's other 4xx passed back             | INVALID_ARGUMENT    | the provider's message       |
| any other `DetourError` (a bug)                | INTERNAL            |                              |

Every status also carries a `google.rpc.ErrorInfo` (domain `detour`): a stable `reason` and, for a
provider's answer, its HTTP status, error type and provider id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from sidecar.dialects import Dialect
from sidecar.dialects.sse import SseDecoder
from sidecar.dialects.stream_events import EventKind, classify_event, stream_error
from sidecar.errors import AllCandidatesFailed, AllCandidatesLimited, DetourError, NoRouteError, RequestError

DOMAIN = "detour"
Code = grpc.StatusCode


@dataclass(frozen=True, slots=True)
class RpcFailure:
    code: Any  # a grpc.StatusCode (untyped library)
    message: str
    reason: str  # google.rpc.ErrorInfo.reason: UPPER_SNAKE_CASE, stable
    retry_after_s: float | None = None  # google.rpc.RetryInfo, when set
    metadata: Mapping[str, str] = field(default_factory=dict)  # ErrorInfo.metadata


def failure_for(exc: DetourError) -> RpcFailure:
    """What a Detour error raised before any answer becomes."""
    if isinstance(exc, AllCandidatesLimited):
        return RpcFailure(
            Code.RESOURCE_EXHAUSTED,
            str(exc),
            "ALL_CANDIDATES_LIMITED",
            exc.retry_after_s,
            {"attempts": str(exc.attempts)},
        )
    if isinstance(exc, AllCandidatesFailed):
        attempts = {"attempts": str(exc.attempts)}
        return RpcFailure(Code.UNAVAILABLE, str(exc), "ALL_CANDIDATES_FAILED", exc.retry_after_s, attempts)
    if isinstance(exc, NoRouteError):
        return RpcFailure(Code.NOT_FOUND, str(exc), "NO_ROUTE")
    if isinstance(exc, RequestError):
        if exc.status == 503:
            return RpcFailure(Code.UNAVAILABLE, exc.message, "NO_CONFIG")
        if exc.status == 499:
            return RpcFailure(Code.CANCELLED, exc.message, "CLIENT_GONE")
        metadata = {"param": exc.param} if exc.param else {}
        return RpcFailure(Code.INVALID_ARGUMENT, exc.message, "INVALID_REQUEST", metadata=metadata)
    return RpcFailure(Code.INTERNAL, f"internal error: {type(exc).__name__}", "INTERNAL")


def failure_for_answer(status: int, body: bytes, provider_id: str) -> RpcFailure:
    """A provider's non-2xx answer that the router passed back (its own 4xx, in the dialect the
    request was built in: both dialects carry `error.message` and `error.type`)."""
    message, error_type = _provider_error(body)
    if status == 401:
        code = Code.UNAUTHENTICATED
    elif status == 403:
        code = Code.PERMISSION_DENIED
    elif status == 429:
        code = Code.RESOURCE_EXHAUSTED
    elif status >= 500:
        code = Code.UNAVAILABLE
    else:
        code = Code.INVALID_ARGUMENT
    metadata = {"http_status": str(status), "provider": provider_id}
    if error_type:
        metadata["error_type"] = error_type
    message = message or f"the provider answered HTTP {status}"
    return RpcFailure(code, message, "PROVIDER_ERROR", None, metadata)


def _provider_error(body: bytes) -> tuple[str, str]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", ""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("message") or ""), str(error.get("type") or error.get("code") or "")


def stream_failure(dialect: Dialect, last: bytes) -> RpcFailure | None:
    """How a routed stream whose last bytes were `last` ended: None when its last event is the
    dialect's terminator, else UNAVAILABLE with the in-band error's message. The relay ends every
    broken stream with an error event and every complete one with its terminator
    (docs/architecture.md §3), each yield holding whole events, so the last one decides."""
    events = SseDecoder().feed(last)
    if events and classify_event(dialect, events[-1]) is EventKind.DONE:
        return None
    errors = [event for event in events if classify_event(dialect, event) is EventKind.ERROR]
    message = (
        stream_error(dialect, errors[-1]).message
        if errors
        else "the provider's stream ended before the answer was complete"
    )
    return RpcFailure(Code.UNAVAILABLE, message, "STREAM_BROKEN")


def rich_status(failure: RpcFailure) -> Any:
    """A `grpc.Status` whose trailing metadata holds a `google.rpc.Status` with the details
    (`grpc-status-details-bin`), which `grpc_status.rpc_status.from_call` reads on the client."""
    info = error_details_pb2.ErrorInfo(reason=failure.reason, domain=DOMAIN, metadata=failure.metadata)
    details = [_packed(info)]
    if failure.retry_after_s is not None:
        details.append(_packed(retry_info(failure.retry_after_s)))
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message, details=details)
    return rpc_status.to_status(status)


def retry_info(seconds: float) -> Any:
    """RetryInfo for a wait: never 0 (a client told to retry at once would just spin), whole ms up."""
    millis = max(math.ceil(seconds * 1000), 1)
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds, remainder = divmod(millis, 1000)
    info.retry_delay.nanos = remainder * 1_000_000
    return info


def _packed(message: Any) -> Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
