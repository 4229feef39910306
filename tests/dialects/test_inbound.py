"""Turning a request body into what the router needs, or a 400 that says what is wrong."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.inbound import ParsedRequest, parse_request
from sidecar.errors import DetourError, RequestError

OPENAI = Dialect.OPENAI
ANTHROPIC = Dialect.ANTHROPIC

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
