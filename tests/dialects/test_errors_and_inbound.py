"""Client-facing errors in each dialect, and turning a request body into what the router needs."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.errors import error_payload, error_type_for, render_error, render_stream_error
from sidecar.dialects.inbound import ParsedRequest, parse_request
from sidecar.dialects.sse import SseDecoder
from sidecar.dialects.stream_events import EventKind, StreamError, classify_event, stream_error
from sidecar.errors import DetourError, RequestError

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


# --- parse_request -------------------------------------------------------------------------------


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(
    ("dialect", "raw", "expected"),
    [
        (
            OPENAI,
            body(model="gpt-4o", messages=MESSAGES),
            ParsedRequest({"model": "gpt-4o", "messages": MESSAGES}, "gpt-4o", False),
        ),
        (
            OPENAI,
            body(model="gpt-4o", messages=[], stream=True, temperature=0.2),
            ParsedRequest(
                {"model": "gpt-4o", "messages": [], "stream": True, "temperature": 0.2}, "gpt-4o", True
            ),
        ),
        (
            ANTHROPIC,
            body(model="claude-sonnet-4", messages=MESSAGES, max_tokens=1024, stream=False),
            ParsedRequest(
                {"model": "claude-sonnet-4", "messages": MESSAGES, "max_tokens": 1024, "stream": False},
                "claude-sonnet-4",
                False,
            ),
        ),
        (
            ANTHROPIC,
            body(model="claude-sonnet-4", messages=MESSAGES, max_tokens=0, stream=True, metadata={"x": 1}),
            ParsedRequest(
                {
                    "model": "claude-sonnet-4",
                    "messages": MESSAGES,
                    "max_tokens": 0,
                    "stream": True,
                    "metadata": {"x": 1},
                },
                "claude-sonnet-4",
                True,
            ),
        ),
    ],
    ids=["openai minimal", "openai streaming with extras", "anthropic", "anthropic extras pass through"],
)
def test_a_valid_request_parses_to_its_body_model_and_stream_flag(
    dialect: Dialect, raw: bytes, expected: ParsedRequest
) -> None:
    assert parse_request(dialect, raw) == expected


def test_an_openai_request_needs_no_max_tokens() -> None:
    assert parse_request(OPENAI, body(model="gpt-4o", messages=MESSAGES)).model == "gpt-4o"


@pytest.mark.parametrize(
    ("dialect", "raw", "message", "param"),
    [
        (OPENAI, b"", "the request body is empty; expected a JSON object", None),
        (ANTHROPIC, b"", "the request body is empty; expected a JSON object", None),
        (OPENAI, b"[]", "the request body must be a JSON object", None),
        (OPENAI, b'"gpt-4o"', "the request body must be a JSON object", None),
        (OPENAI, b"42", "the request body must be a JSON object", None),
        (OPENAI, b"null", "the request body must be a JSON object", None),
        (OPENAI, body(messages=MESSAGES), "'model' is required and must be a non-empty string", "model"),
        (
            OPENAI,
            body(model="", messages=MESSAGES),
            "'model' is required and must be a non-empty string",
            "model",
        ),
        (
            OPENAI,
            body(model=4, messages=MESSAGES),
            "'model' is required and must be a non-empty string",
            "model",
        ),
        (
            OPENAI,
            body(model=None, messages=MESSAGES),
            "'model' is required and must be a non-empty string",
            "model",
        ),
        (OPENAI, body(model="gpt-4o"), "'messages' is required and must be an array", "messages"),
        (
            OPENAI,
            body(model="gpt-4o", messages="Hello"),
            "'messages' is required and must be an array",
            "messages",
        ),
        (
            OPENAI,
            body(model="gpt-4o", messages={"role": "user"}),
            "'messages' is required and must be an array",
            "messages",
        ),
        (OPENAI, body(model="gpt-4o", messages=[], stream="true"), "'stream' must be a boolean", "stream"),
        (OPENAI, body(model="gpt-4o", messages=[], stream=1), "'stream' must be a boolean", "stream"),
        (ANTHROPIC, body(model="claude", messages=[]), "max_tokens: Field required", "max_tokens"),
        (
            ANTHROPIC,
            body(model="claude", messages=[], max_tokens=None),
            "max_tokens: Input should be a valid integer",
            "max_tokens",
        ),
        (
            ANTHROPIC,
            body(model="claude", messages=MESSAGES, stream="yes"),
            "'stream' must be a boolean",
            "stream",
        ),
    ],
    ids=[
        "openai empty body",
        "anthropic empty body",
        "array",
        "string",
        "number",
        "null",
        "missing model",
        "empty model",
        "numeric model",
        "null model",
        "missing messages",
        "messages string",
        "messages object",
        "stream string",
        "stream integer",
        "anthropic missing max_tokens",
        "anthropic null max_tokens",
        "anthropic stream string",
    ],
)
def test_an_unusable_request_is_a_400_with_a_message_for_the_client(
    dialect: Dialect, raw: bytes, message: str, param: str | None
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(dialect, raw)

    assert (caught.value.message, caught.value.param, caught.value.status) == (message, param, 400)
    assert str(caught.value) == message
    assert isinstance(caught.value, DetourError)


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"model": "gpt-4o",}', b"\xff\xfe", b"{'model': 1}"])
@pytest.mark.parametrize("dialect", [OPENAI, ANTHROPIC])
def test_a_body_that_is_not_json_says_so_with_the_parser_s_reason(dialect: Dialect, raw: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(dialect, raw)

    assert caught.value.message.startswith("the request body is not valid JSON: ")
    assert len(caught.value.message) > len("the request body is not valid JSON: ")
    assert caught.value.param is None
    assert isinstance(caught.value.__cause__, orjson.JSONDecodeError)


@pytest.mark.parametrize("max_tokens", ["1024", 1024.0, True])
def test_an_anthropic_max_tokens_that_is_not_an_integer_is_rejected(max_tokens: object) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(ANTHROPIC, body(model="claude", messages=MESSAGES, max_tokens=max_tokens))

    assert caught.value.param == "max_tokens"


def test_a_wrongly_typed_max_tokens_is_not_reported_as_missing() -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(ANTHROPIC, body(model="claude", messages=MESSAGES, max_tokens="1024"))

    assert "required" not in caught.value.message


def test_an_openai_request_with_stream_null_is_not_streamed() -> None:
    assert parse_request(OPENAI, body(model="gpt-4o", messages=MESSAGES, stream=None)).stream is False
