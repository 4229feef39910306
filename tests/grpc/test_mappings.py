"""The pure tables of the gRPC edge: errors → status codes and details (`status.py`), a broken
stream's ending, the client's headers from metadata (`headers.py`), /admin/state and events as
messages (`messages.py`)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from sidecar.dialects import Dialect
from sidecar.dialects.errors import render_stream_error
from sidecar.dialects.frames import DONE_FRAME, MESSAGE_STOP_FRAME
from sidecar.errors import (
    AllCandidatesFailed,
    AllCandidatesLimited,
    ConfigError,
    NoRouteError,
    RequestError,
)
from sidecar.ingress.grpc.headers import client_headers
from sidecar.ingress.grpc.messages import event_message, state_message, timestamp
from sidecar.ingress.grpc.status import (
    failure_for,
    failure_for_answer,
    retry_info,
    rich_status,
    stream_failure,
)
from sidecar.providers.classify import Outcome
from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.events import ConfigApplied, ConfigRejected, FailedOver, LimitCleared, RateLimited
from sidecar.routing.limits import LimitReason

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (AllCandidatesLimited(2.5, 3), Code.RESOURCE_EXHAUSTED, "ALL_CANDIDATES_LIMITED"),
        (AllCandidatesFailed(["a: timeout"], 2, status=502), Code.UNAVAILABLE, "ALL_CANDIDATES_FAILED"),
        (NoRouteError("m"), Code.NOT_FOUND, "NO_ROUTE"),
        (
            RequestError("no provider of this route can serve the request: x"),
            Code.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (RequestError("too large", status=413), Code.INVALID_ARGUMENT, "INVALID_REQUEST"),
        (RequestError("no routing config is loaded yet", status=503), Code.UNAVAILABLE, "NO_CONFIG"),
        (RequestError("gone", status=499), Code.CANCELLED, "CLIENT_GONE"),
        (ConfigError([]), Code.INTERNAL, "INTERNAL"),
    ],
)
def test_each_detour_error_has_its_code(exc: Any, code: Any, reason: str) -> None:
    failure = failure_for(exc)
    assert (failure.code, failure.reason) == (code, reason)


def test_the_details_travel_in_grpc_status_details_bin() -> None:
    status = rich_status(failure_for(AllCandidatesLimited(2.5004, 3)))
    assert status.code is Code.RESOURCE_EXHAUSTED
    [(key, raw)] = status.trailing_metadata
    assert key == rpc_status.GRPC_DETAILS_METADATA_KEY
    decoded = status_pb2.Status.FromString(raw)
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert decoded.details[0].Unpack(info)
    assert decoded.details[1].Unpack(retry)
    assert (info.domain, info.reason, dict(info.metadata)) == (
        "detour",
        "ALL_CANDIDATES_LIMITED",
        {"attempts": "3"},
    )
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (2, 501_000_000), "whole ms, rounded up"
    assert retry_info(0.0).retry_delay.nanos == 1_000_000, "never 'retry at once'"
    assert (
        len(
            status_pb2.Status.FromString(
                rich_status(failure_for(NoRouteError("m"))).trailing_metadata[0][1]
            ).details
        )
        == 1
    )


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (400, b'{"error": {"message": "bad", "type": "invalid_request"}}', Code.INVALID_ARGUMENT, "bad"),
        (401, b'{"type": "error", "error": {"type": "authentication_error", "message": "key"}}',
         Code.UNAUTHENTICATED, "key"),
        (403, b'{"error": {"message": "no", "code": "forbidden"}}', Code.PERMISSION_DENIED, "no"),
        (429, b"{}", Code.RESOURCE_EXHAUSTED, "the provider answered HTTP 429"),
        (500, b"<html>", Code.UNAVAILABLE, "the provider answered HTTP 500"),
        (422, b'["not", "an", "object"]', Code.INVALID_ARGUMENT, "the provider answered HTTP 422"),
    ],
)  # fmt: skip
def test_a_providers_answer_maps_to_a_code_with_its_message(
    status: int, body: bytes, code: Any, message: str
) -> None:
    failure = failure_for_answer(status, body, "p")
    assert (failure.code, failure.message, failure.metadata["provider"]) == (code, message, "p")


@pytest.mark.parametrize(
    ("dialect", "last", "message"),
    [
        (Dialect.OPENAI, b'data: {"choices": []}\n\n' + DONE_FRAME, None),
        (Dialect.ANTHROPIC, MESSAGE_STOP_FRAME, None),
        (Dialect.OPENAI, render_stream_error(Dialect.OPENAI, 502, "cut"), "cut"),
        (Dialect.ANTHROPIC, render_stream_error(Dialect.ANTHROPIC, 504, "stalled"), "stalled"),
        (
            Dialect.OPENAI,
            b'data: {"choices": []}\n\n',
            "the provider's stream ended before the answer was complete",
        ),
        (Dialect.OPENAI, b"", "the provider's stream ended before the answer was complete"),
    ],
)
def test_a_stream_is_complete_only_when_its_last_event_is_the_terminator(
    dialect: Dialect, last: bytes, message: str | None
) -> None:
    failure = stream_failure(dialect, last)
    assert (failure.message if failure is not None else None) == message
    assert failure is None or failure.code is Code.UNAVAILABLE


def test_metadata_and_request_headers_make_the_client_headers_of_http() -> None:
    metadata = [
        ("authorization", "Bearer from-metadata"),
        ("x-api-key", "sk-ant"),
        ("traceparent", "00-ab-cd-01"),
        ("grpc-trace-bin", b"\x00\x01"),
        ("anthropic-version", "2023-06-01"),
    ]
    headers = client_headers(Dialect.ANTHROPIC, metadata, {"Authorization": "Bearer own", "x-bad": "é✓"})
    assert headers.credential == (("authorization", "Bearer own"), ("x-api-key", "sk-ant"))
    assert headers.options == (("anthropic-version", "2023-06-01"),)
    assert headers.traceparent == "00-ab-cd-01"
    assert client_headers(Dialect.OPENAI, None).credential == ()
    assert client_headers(Dialect.OPENAI, [], {"authorization": "Bearer ✓"}).credential == ()


def test_admin_state_becomes_the_state_message() -> None:
    state = {
        "config": {"version": "v1", "source": "file:r.yaml", "providers": ["a"], "rules": ["r"]},
        "rate_limited": [{
            "provider": "a", "model": None, "reason": "quota", "wait_source": "quota", "wait_s": 60.0,
            "remaining_s": 12.5, "expires_at": 1_750_000_012.5, "consecutive_429s": 1,
        }],
        "rate_limited_total": 1,
        "rate_limit_table": {"size": 1, "capacity": 1000, "evictions": 0},
        "circuits": [
            {"provider": "a", "model": "m", "state": "open", "consecutive_failures": 5, "retry_in_s": 3.0},
            {"provider": "a", "model": "n", "state": "closed", "consecutive_failures": 0, "retry_in_s": None},
        ],
        "circuits_total": 2,
        "counters": {"retries": 4},
        "reload": {
            "source": "configmap:ns/n", "version": None, "last_result": "rejected", "last_problems": ["x: y"],
            "last_change_at": None, "applied": 0, "rejected": 1, "failed": 0, "last_failure": None,
        },
    }  # fmt: skip
    message = state_message(state)
    [limit] = message.rate_limited
    assert (limit.model, limit.reason, limit.expires_at.seconds, limit.expires_at.nanos) == (
        "", "quota", 1_750_000_012, 500_000_000,
    )  # fmt: skip
    opened, closed = message.circuits
    assert (opened.retry_in_s, opened.HasField("retry_in_s"), closed.HasField("retry_in_s")) == (
        3.0,
        True,
        False,
    )
    assert dict(message.counters) == {"retries": 4}
    assert (message.reload.last_result, list(message.reload.last_problems)) == ("rejected", ["x: y"])
    assert not message.reload.HasField("last_change_at")
    assert not message.HasField("circuit_table")


def test_every_event_kind_becomes_its_message() -> None:
    events = [
        RateLimited("a", "m", 30.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT),
        FailedOver("a", "m", "b", "m2", Outcome.TIMEOUT, resumed=True),
        ConfigApplied("v2", "file:r.yaml"),
        ConfigRejected("file:r.yaml", "missing", ("gone",), None),
        LimitCleared("a", None, 2),
    ]
    messages = [event_message(1.25, event, dropped=n) for n, event in enumerate(events)]
    assert [message.WhichOneof("kind") for message in messages] == [
        "rate_limited", "failover", "config_applied", "config_rejected", "limit_cleared",
    ]  # fmt: skip
    assert messages[1].failover.reason == "resume"
    assert (messages[3].config_rejected.active_version, list(messages[3].config_rejected.problems)) == (
        "",
        ["gone"],
    )
    assert (messages[4].limit_cleared.model, messages[4].dropped, messages[4].at.nanos) == (
        "",
        4,
        250_000_000,
    )
    assert timestamp(-0.5).seconds == -1
    assert timestamp(-0.5).nanos == 500_000_000
