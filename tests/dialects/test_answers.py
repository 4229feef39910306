"""A 2xx answer is checked to be an answer of its dialect before it is relied on."""

from __future__ import annotations

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.answers import parse_answer
from sidecar.errors import MalformedAnswer
from tests.dialects.fixtures import load_json


@pytest.mark.parametrize(
    ("dialect", "fixture"),
    [
        (Dialect.OPENAI, "openai_completion_tool_calls.json"),
        (Dialect.ANTHROPIC, "anthropic_message_tool_use.json"),
    ],
)
def test_a_real_answer_is_parsed_once_and_returned(dialect: Dialect, fixture: str) -> None:
    answer = load_json(fixture)
    assert parse_answer(dialect, orjson.dumps(answer)) == answer


def test_compatible_servers_that_omit_optional_fields_still_pass() -> None:
    assert parse_answer(Dialect.OPENAI, b'{"choices": []}') == {"choices": []}
    assert parse_answer(Dialect.ANTHROPIC, b'{"content": []}') == {"content": []}


@pytest.mark.parametrize(
    ("dialect", "raw", "says"),
    [
        (Dialect.OPENAI, b"<html>502 Bad Gateway</html>", "not JSON"),
        (Dialect.OPENAI, b'{"choices": [', "not JSON"),
        (Dialect.OPENAI, b"", "not JSON"),
        (Dialect.ANTHROPIC, b"[1]", "not an object"),
        (Dialect.OPENAI, b'{"type": "message", "content": []}', "no 'choices'"),
        (Dialect.ANTHROPIC, b'{"choices": [], "object": "chat.completion"}', "no 'content'"),
        (Dialect.ANTHROPIC, b'{"type": "error", "content": []}', "not a message"),
    ],
)
def test_a_body_that_is_no_answer_is_malformed(dialect: Dialect, raw: bytes, says: str) -> None:
    with pytest.raises(MalformedAnswer, match=says):
        parse_answer(dialect, raw)


def test_the_error_never_quotes_the_body() -> None:
    with pytest.raises(MalformedAnswer) as caught:
        parse_answer(Dialect.OPENAI, b"sk-secret-in-a-proxy-page")
    assert "sk-secret" not in str(caught.value)
