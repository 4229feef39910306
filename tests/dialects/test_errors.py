"""Detour's own errors rendered in each dialect: the status → type tables, the body shapes and the
in-band stream error frames (read back with the stream-event classifier, as the relay reads them)."""

from __future__ import annotations

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.errors import error_payload, error_type_for, render_error, render_stream_error
from sidecar.dialects.sse import SseDecoder
from sidecar.dialects.stream_events import EventKind, StreamError, classify_event, stream_error

OPENAI = Dialect.OPENAI
ANTHROPIC = Dialect.ANTHROPIC

# --- error rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "invalid_request_error"),
        (403, "permission_error", "invalid_request_error"),
        (404, "not_found_error", "invalid_request_error"),
        (413, "request_too_large", "invalid_request_error"),
        (422, "invalid_request_error", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "api_error", "server_error"),
        (502, "api_error", "server_error"),
        (503, "overloaded_error", "server_error"),
        (504, "timeout_error", "server_error"),
        (529, "overloaded_error", "server_error"),
        (599, "api_error", "server_error"),
    ],
)
def test_each_status_maps_to_the_error_type_its_dialect_uses(
    status: int, anthropic_type: str, openai_type: str
) -> None:
    assert error_type_for(ANTHROPIC, status) == anthropic_type
    assert error_type_for(OPENAI, status) == openai_type


def test_an_openai_error_has_message_type_param_and_code() -> None:
    payload = error_payload(OPENAI, 400, "'model' is required", param="model", code="missing_model")

    assert payload == {
        "error": {
            "message": "'model' is required",
            "type": "invalid_request_error",
            "param": "model",
            "code": "missing_model",
        }
    }


def test_an_openai_error_without_param_or_code_sends_them_as_null() -> None:
    assert orjson.loads(render_error(OPENAI, 502, "every candidate failed")) == {
        "error": {"message": "every candidate failed", "type": "server_error", "param": None, "code": None}
    }


def test_an_anthropic_error_is_a_typed_error_object() -> None:
    assert orjson.loads(render_error(ANTHROPIC, 429, "all candidates are rate-limited")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "all candidates are rate-limited"},
    }


@pytest.mark.parametrize("dialect", [OPENAI, ANTHROPIC])
def test_an_explicit_error_type_overrides_the_status_table(dialect: Dialect) -> None:
    payload = error_payload(dialect, 400, "blocked", error_type="content_policy_violation")

    assert payload["error"]["type"] == "content_policy_violation"  # type: ignore[index]


def test_an_anthropic_error_carries_no_openai_fields() -> None:
    payload = error_payload(ANTHROPIC, 400, "bad", code="x", param="y")

    assert payload == {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}


@pytest.mark.parametrize("message", ['quote " and backslash \\', "newline\nand unicode é ✓", ""])
@pytest.mark.parametrize("dialect", [OPENAI, ANTHROPIC])
def test_any_message_renders_as_valid_json(dialect: Dialect, message: str) -> None:
    decoded = orjson.loads(render_error(dialect, 400, message))

    assert decoded["error"]["message"] == message


def test_an_openai_stream_error_is_one_unnamed_data_frame() -> None:
    frame = render_stream_error(OPENAI, 429, "rate limited")

    [event] = SseDecoder().feed(frame)
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    assert event.event is None
    assert classify_event(OPENAI, event) is EventKind.ERROR
    assert stream_error(OPENAI, event) == StreamError(429, "rate_limit_exceeded", "rate limited")


@pytest.mark.parametrize(("status", "error_type"), [(429, "rate_limit_error"), (529, "overloaded_error")])
def test_an_anthropic_stream_error_is_an_error_event_that_reads_back_as_the_same_status(
    status: int, error_type: str
) -> None:
    frame = render_stream_error(ANTHROPIC, status, "upstream gave up")

    [event] = SseDecoder().feed(frame)
    assert event.event == "error"
    assert classify_event(ANTHROPIC, event) is EventKind.ERROR
    assert stream_error(ANTHROPIC, event) == StreamError(status, error_type, "upstream gave up")


def test_a_stream_error_message_with_newlines_stays_in_one_frame() -> None:
    events = SseDecoder().feed(render_stream_error(OPENAI, 500, "line one\n\nline two"))

    assert len(events) == 1
    assert stream_error(OPENAI, events[0]).message == "line one\n\nline two"
