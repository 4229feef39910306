"""Upstream error bodies (or garbage) → the client dialect's error shape, status and message kept."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types.shared import ErrorResponse
from openai.types.shared import ErrorObject

from sidecar.dialects.upstream_errors import (
    anthropic_error_to_openai,
    anthropic_error_type_from_openai,
    openai_error_to_anthropic,
)


def anthropic_error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_1"}
    )


ANTHROPIC_ERRORS = [
    ("invalid_request_error", 400, "max_tokens: Field required", "invalid_request_error", None),
    (
        "invalid_request_error",
        400,
        "prompt is too long: 208310 tokens > 200000 maximum",
        "invalid_request_error",
        "context_length_exceeded",
    ),
    ("authentication_error", 401, "invalid x-api-key", "invalid_request_error", "invalid_api_key"),
    ("billing_error", 402, "Your credit balance is too low", "insufficient_quota", "insufficient_quota"),
    (
        "permission_error",
        403,
        "Your API key does not have permission",
        "invalid_request_error",
        "permission_denied",
    ),
    ("not_found_error", 404, "model: claude-nope", "invalid_request_error", "model_not_found"),
    ("not_found_error", 404, "Not found", "invalid_request_error", None),
    (
        "request_too_large",
        413,
        "Request exceeds the maximum allowed number of bytes.",
        "invalid_request_error",
        "request_too_large",
    ),
    (
        "rate_limit_error",
        429,
        "Number of request tokens has exceeded your per-minute rate limit",
        "tokens",
        "rate_limit_exceeded",
    ),
    (
        "rate_limit_error",
        429,
        "Number of concurrent connections has exceeded your rate limit",
        "requests",
        "rate_limit_exceeded",
    ),
    ("api_error", 500, "Internal server error", "server_error", None),
    ("timeout_error", 504, "Request timed out", "server_error", "timeout"),
    ("overloaded_error", 529, "Overloaded", "server_error", "overloaded"),
]


@pytest.mark.parametrize(("anthropic_type", "status", "message", "openai_type", "code"), ANTHROPIC_ERRORS)
def test_anthropic_errors_become_openai_errors_with_the_same_status_and_message(
    anthropic_type: str, status: int, message: str, openai_type: str, code: str | None
) -> None:
    out_status, out = anthropic_error_to_openai(status, anthropic_error_body(anthropic_type, message))
    assert out_status == status
    assert out == {"error": {"message": message, "type": openai_type, "param": None, "code": code}}
    ErrorObject.model_validate(out["error"])


def openai_error(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": error_type, "param": None, "code": code}


OPENAI_ERRORS = [
    (400, openai_error("Invalid 'messages'", "invalid_request_error"), "invalid_request_error"),
    (
        401,
        openai_error("Incorrect API key provided: sk-...", "invalid_request_error", "invalid_api_key"),
        "authentication_error",
    ),
    (
        403,
        openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        "permission_error",
    ),
    (
        404,
        openai_error("The model `gpt-9` does not exist", "invalid_request_error", "model_not_found"),
        "not_found_error",
    ),
    (413, openai_error("Request too large", "invalid_request_error"), "request_too_large"),
    (
        429,
        openai_error(
            "Rate limit reached for gpt-4o on tokens per min (TPM)", "tokens", "rate_limit_exceeded"
        ),
        "rate_limit_error",
    ),
    (500, openai_error("The server had an error", "server_error"), "api_error"),
    (502, openai_error("Bad gateway", "server_error"), "api_error"),
    (503, openai_error("The engine is currently overloaded", "server_error"), "overloaded_error"),
    (504, openai_error("Gateway timeout", "server_error"), "timeout_error"),
    (418, openai_error("I'm a teapot", "odd"), "invalid_request_error"),
]


@pytest.mark.parametrize(("status", "error", "anthropic_type"), OPENAI_ERRORS)
def test_openai_errors_become_anthropic_errors_typed_by_status(
    status: int, error: dict, anthropic_type: str
) -> None:
    out_status, out = openai_error_to_anthropic(status, orjson.dumps({"error": error}))
    assert out_status == status
    assert out == {"type": "error", "error": {"type": anthropic_type, "message": error["message"]}}
    if anthropic_type != "request_too_large":  # documented by Anthropic, not (yet) in the SDK's union
        ErrorResponse.model_validate(out)


def test_openai_context_length_errors_say_prompt_is_too_long_for_anthropic_clients() -> None:
    error = {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    _, out = openai_error_to_anthropic(400, orjson.dumps({"error": error}))
    assert (
        out["error"]["message"] == "prompt is too long: This model's maximum context length is 128000 tokens."
    )


GARBAGE = [
    pytest.param(b"<html><body><h1>502 Bad Gateway</h1></body></html>", id="html"),
    pytest.param(b"", id="empty"),
    pytest.param(b"null", id="json_null"),
    pytest.param(b"[1, 2]", id="json_list"),
    pytest.param(b'{"error": {"message": ""}}', id="empty_message"),
    pytest.param(b'{"error": 42}', id="error_is_a_number"),
    pytest.param(b"\xff\xfe", id="not_utf8"),
]


@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_error_bodies_get_a_generic_message_in_either_dialect(body: bytes) -> None:
    assert anthropic_error_to_openai(502, body) == (
        502,
        {
            "error": {
                "message": "upstream provider returned HTTP 502",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )
    assert openai_error_to_anthropic(502, body) == (
        502,
        {"type": "error", "error": {"type": "api_error", "message": "upstream provider returned HTTP 502"}},
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b'{"error": "model overloaded"}', "model overloaded", id="error_string"),
        pytest.param(b'{"detail": "Not Found"}', "Not Found", id="fastapi_detail"),
        pytest.param(
            b'{"message": "upstream connect error"}', "upstream connect error", id="top_level_message"
        ),
    ],
)
def test_common_non_standard_error_bodies_keep_their_message(body: bytes, message: str) -> None:
    assert anthropic_error_to_openai(503, body)[1]["error"]["message"] == message
    assert openai_error_to_anthropic(503, body)[1]["error"]["message"] == message


def test_an_unknown_anthropic_error_type_is_typed_by_status() -> None:
    _, out = anthropic_error_to_openai(429, anthropic_error_body("brand_new_error", "slow down"))
    assert out["error"]["type"] == "requests"
    assert out["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("error", "anthropic_type"),
    [
        ({"type": "tokens", "code": "rate_limit_exceeded"}, "rate_limit_error"),
        ({"type": "insufficient_quota", "code": "insufficient_quota"}, "billing_error"),
        ({"type": "invalid_request_error", "code": "context_length_exceeded"}, "invalid_request_error"),
        ({"type": "server_error", "code": None}, "api_error"),
        ({}, "api_error"),
        ({"code": orjson.loads("[" * 1000 + "]" * 1000), "type": "tokens"}, "rate_limit_error"),
    ],
)
def test_in_band_openai_errors_are_typed_by_code_then_type(error: dict, anthropic_type: str) -> None:
    assert anthropic_error_type_from_openai(error) == anthropic_type
