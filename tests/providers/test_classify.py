"""What an upstream answer means for the attempt loop (docs/architecture.md §3 "Outcome"), on both APIs' real
bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.config.models import ProviderType
from sidecar.providers.classify import Outcome, ProviderError, classify, parse_error_body

OPENAI = ProviderType.OPENAI
ANTHROPIC = ProviderType.ANTHROPIC


def openai_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def anthropic_body(error_type: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011"}
    )


OPENAI_RATE_LIMIT = openai_body(
    "Rate limit reached for gpt-4o in organization org-abc on requests per min (RPM): Limit 500, "
    "Used 500, Requested 1. Please try again in 120ms.",
    "requests",
    "rate_limit_exceeded",
)
OPENAI_TOKENS_RATE_LIMIT = openai_body(
    "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000.",
    "tokens",
    "rate_limit_exceeded",
)
OPENAI_QUOTA = openai_body(
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
)
OPENAI_SERVER_ERROR = openai_body(
    "The server had an error while processing your request. Sorry about that!", "server_error", None
)
OPENAI_CONTEXT_LENGTH = openai_body(
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 "
    "tokens. Please reduce the length of the messages.",
    "invalid_request_error",
    "context_length_exceeded",
    "messages",
)
OPENAI_CONTENT_POLICY = openai_body(
    "Your request was rejected as a result of our safety system.",
    "invalid_request_error",
    "content_policy_violation",
)
OPENAI_BAD_KEY = openai_body(
    "Incorrect API key provided: sk-abc***xyz. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    "invalid_request_error",
    "invalid_api_key",
)
OPENAI_REGION = openai_body(
    "Country, region, or territory not supported", "request_forbidden", "unsupported_country"
)
OPENAI_NO_MODEL = openai_body(
    "The model `gpt-5-turbo` does not exist or you do not have access to it.",
    "invalid_request_error",
    "model_not_found",
)
OPENAI_BAD_REQUEST = openai_body(
    "Invalid type for 'temperature': expected a decimal, but got a string instead.",
    "invalid_request_error",
    "invalid_type",
    "temperature",
)
ANTHROPIC_RATE_LIMIT = anthropic_body(
    "rate_limit_error",
    "This request would exceed the rate limit for your organization of 50 requests per minute.",
)
ANTHROPIC_OVERLOADED = anthropic_body("overloaded_error", "Overloaded")
ANTHROPIC_API_ERROR = anthropic_body("api_error", "Internal server error")
ANTHROPIC_PROMPT_TOO_LONG = anthropic_body(
    "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
)
ANTHROPIC_CONTEXT_LIMIT = anthropic_body(
    "invalid_request_error",
    "input length and `max_tokens` exceed context limit: 197463 + 8192 > 200000, decrease input length "
    "or `max_tokens` and try again",
)
ANTHROPIC_MAX_TOKENS = anthropic_body(
    "invalid_request_error",
    "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4",
)
ANTHROPIC_BAD_KEY = anthropic_body("authentication_error", "invalid x-api-key")
ANTHROPIC_FORBIDDEN = anthropic_body(
    "permission_error", "Your API key does not have permission to use the model."
)
ANTHROPIC_NO_MODEL = anthropic_body("not_found_error", "model: claude-9")
ANTHROPIC_TOO_LARGE = anthropic_body(
    "request_too_large", "Request exceeds the maximum allowed number of bytes."
)
HTML_BAD_GATEWAY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(
    ("dialect", "status", "body", "outcome"),
    [
        (OPENAI, 200, b'{"id": "chatcmpl-1"}', Outcome.OK),
        (ANTHROPIC, 200, b'{"id": "msg_1"}', Outcome.OK),
        (OPENAI, 429, OPENAI_RATE_LIMIT, Outcome.RATE_LIMITED),
        (OPENAI, 429, OPENAI_TOKENS_RATE_LIMIT, Outcome.RATE_LIMITED),
        (OPENAI, 429, b"", Outcome.RATE_LIMITED),
        (ANTHROPIC, 429, ANTHROPIC_RATE_LIMIT, Outcome.RATE_LIMITED),
        (OPENAI, 429, OPENAI_QUOTA, Outcome.QUOTA_EXHAUSTED),
        (OPENAI, 500, OPENAI_SERVER_ERROR, Outcome.SERVER_ERROR),
        (OPENAI, 502, HTML_BAD_GATEWAY, Outcome.SERVER_ERROR),
        (
            OPENAI,
            503,
            openai_body("The engine is currently overloaded.", "server_error", None),
            Outcome.SERVER_ERROR,
        ),
        (ANTHROPIC, 500, ANTHROPIC_API_ERROR, Outcome.SERVER_ERROR),
        (ANTHROPIC, 529, ANTHROPIC_OVERLOADED, Outcome.SERVER_ERROR),
        (ANTHROPIC, 408, b"", Outcome.SERVER_ERROR),
        (OPENAI, 408, b"request timeout", Outcome.SERVER_ERROR),
        (OPENAI, 400, OPENAI_CONTEXT_LENGTH, Outcome.CONTEXT_LENGTH),
        (ANTHROPIC, 400, ANTHROPIC_PROMPT_TOO_LONG, Outcome.CONTEXT_LENGTH),
        (ANTHROPIC, 400, ANTHROPIC_CONTEXT_LIMIT, Outcome.CONTEXT_LENGTH),
        (OPENAI, 400, OPENAI_CONTENT_POLICY, Outcome.CLIENT_ERROR),
        (OPENAI, 400, OPENAI_BAD_REQUEST, Outcome.CLIENT_ERROR),
        (ANTHROPIC, 400, ANTHROPIC_MAX_TOKENS, Outcome.CLIENT_ERROR),
        (OPENAI, 401, OPENAI_BAD_KEY, Outcome.CLIENT_ERROR),
        (ANTHROPIC, 401, ANTHROPIC_BAD_KEY, Outcome.CLIENT_ERROR),
        (OPENAI, 403, OPENAI_REGION, Outcome.CLIENT_ERROR),
        (ANTHROPIC, 403, ANTHROPIC_FORBIDDEN, Outcome.CLIENT_ERROR),
        (OPENAI, 404, OPENAI_NO_MODEL, Outcome.CLIENT_ERROR),
        (ANTHROPIC, 404, ANTHROPIC_NO_MODEL, Outcome.CLIENT_ERROR),
        (ANTHROPIC, 413, ANTHROPIC_TOO_LARGE, Outcome.CLIENT_ERROR),
        (OPENAI, 400, b"", Outcome.CLIENT_ERROR),
        (OPENAI, 422, b"not json", Outcome.CLIENT_ERROR),
    ],
    ids=[
        "openai 200",
        "anthropic 200",
        "openai 429 requests",
        "openai 429 tokens",
        "openai 429 without a body",
        "anthropic 429",
        "openai 429 insufficient_quota",
        "openai 500",
        "openai 502 html",
        "openai 503",
        "anthropic 500",
        "anthropic 529 overloaded",
        "anthropic 408",
        "openai 408",
        "openai 400 context_length_exceeded",
        "anthropic 400 prompt is too long",
        "anthropic 400 exceed context limit",
        "openai 400 content_policy_violation",
        "openai 400 invalid type",
        "anthropic 400 max_tokens too large",
        "openai 401",
        "anthropic 401",
        "openai 403",
        "anthropic 403",
        "openai 404",
        "anthropic 404",
        "anthropic 413",
        "openai 400 without a body",
        "openai 422 garbage",
    ],
)
def test_an_upstream_answer_is_classified_by_status_and_error_body(
    dialect: ProviderType, status: int, body: bytes, outcome: Outcome
) -> None:
    assert classify(dialect, status, parse_error_body(body)) is outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.SERVER_ERROR),
        (408, Outcome.SERVER_ERROR),
        (400, Outcome.CLIENT_ERROR),
    ],
)
def test_an_answer_without_a_parsed_error_is_classified_by_status_alone(
    status: int, outcome: Outcome
) -> None:
    assert classify(OPENAI, status, None) is outcome


def test_a_context_length_code_only_counts_for_openai_but_the_phrase_counts_for_both() -> None:
    coded = ProviderError("invalid_request_error", "context_length_exceeded", "too many tokens")
    phrased = ProviderError("invalid_request_error", None, "Prompt is too long")

    assert classify(OPENAI, 400, coded) is Outcome.CONTEXT_LENGTH
    assert classify(ANTHROPIC, 400, coded) is Outcome.CLIENT_ERROR
    assert classify(OPENAI, 400, phrased) is Outcome.CONTEXT_LENGTH
    assert classify(ANTHROPIC, 400, phrased) is Outcome.CONTEXT_LENGTH


def test_a_server_error_is_never_a_context_length_error_even_if_its_message_says_so() -> None:
    error = ProviderError("api_error", "context_length_exceeded", "prompt is too long")

    assert classify(ANTHROPIC, 500, error) is Outcome.SERVER_ERROR


# --- parse_error_body ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            OPENAI_RATE_LIMIT,
            ProviderError(
                "requests", "rate_limit_exceeded", orjson.loads(OPENAI_RATE_LIMIT)["error"]["message"]
            ),
        ),
        (
            OPENAI_SERVER_ERROR,
            ProviderError(
                "server_error",
                None,
                "The server had an error while processing your request. Sorry about that!",
            ),
        ),
        (
            ANTHROPIC_PROMPT_TOO_LONG,
            ProviderError(
                "invalid_request_error", None, "prompt is too long: 210000 tokens > 200000 maximum"
            ),
        ),
        (b'{"error": {"code": 429, "message": "slow down"}}', ProviderError("unknown", "429", "slow down")),
        (b'{"error": {"type": "x", "message": null}}', ProviderError("x", None, "")),
        (b'{"error": {}}', ProviderError("unknown", None, "")),
    ],
    ids=["openai", "openai null code", "anthropic", "numeric code", "null message", "empty error object"],
)
def test_an_error_body_of_either_api_parses_to_type_code_and_message(
    body: bytes, expected: ProviderError
) -> None:
    assert parse_error_body(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the provider gave no error details"),
        (b"   \r\n", "the provider gave no error details"),
        (HTML_BAD_GATEWAY, HTML_BAD_GATEWAY.decode()),
        (b"upstream connect error or disconnect/reset before headers", None),
        (b"[1, 2, 3]", "[1, 2, 3]"),
        (b"null", "null"),
        (b'"Internal Server Error"', '"Internal Server Error"'),
        (b'{"error": "rate limited"}', '{"error": "rate limited"}'),
        (b'{"message": "no error key"}', '{"message": "no error key"}'),
        (b'{"error": {"message": "trunc', '{"error": {"message": "trunc'),
        (b"\xff\xfe not utf-8", "\ufffd\ufffd not utf-8"),
    ],
    ids=[
        "empty",
        "whitespace",
        "html",
        "envoy text",
        "json array",
        "json null",
        "json string",
        "error is a string",
        "no error key",
        "truncated json",
        "invalid utf-8",
    ],
)
def test_a_body_that_is_not_an_api_error_becomes_an_unknown_error_quoting_it(
    body: bytes, message: str | None
) -> None:
    error = parse_error_body(body)

    assert error == ProviderError("unknown", None, message if message is not None else body.decode())


def test_a_long_unparseable_body_is_cut_to_200_bytes() -> None:
    error = parse_error_body(b"x" * 10_000)

    assert error.message == "x" * 200


def test_cutting_a_body_inside_a_multibyte_character_does_not_raise() -> None:
    error = parse_error_body("é".encode() * 150)  # 300 bytes; the cut falls on a character boundary

    assert error.message == "é" * 100
    assert parse_error_body(b"a" + "é".encode() * 150).message.startswith("a" + "é" * 99)


@pytest.mark.parametrize("payload", [{"error": {"message": ["a", "list"]}}, {"error": {"type": 7}}])
def test_odd_field_types_in_an_error_object_are_stringified_not_raised(payload: dict[str, Any]) -> None:
    error = parse_error_body(orjson.dumps(payload))

    assert isinstance(error.message, str)
    assert isinstance(error.error_type, str)
