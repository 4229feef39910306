"""`parse_request`, the first code a client's bytes reach: for any bytes, in either dialect, it returns
a `ParsedRequest` or raises `RequestError` (a 400 that names the field), never anything else; it
accepts exactly the bodies docs/architecture.md §4 and `sidecar.dialects.inbound` describe; and a
valid request keeps its body, model and stream flag."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.dialects import Dialect
from sidecar.dialects.inbound import ParsedRequest, parse_request
from sidecar.errors import RequestError
from tests.properties.strategies import (
    REQUEST_KEYS,
    GeneratedRequest,
    anthropic_requests,
    json_values,
    openai_requests,
)

PROPERTY = settings(max_examples=100, deadline=None)
dialects = st.sampled_from(list(Dialect))


def parse_or_refuse(dialect: Dialect, raw: bytes) -> ParsedRequest | RequestError:
    """The only two outcomes allowed; any other exception fails the test where it is raised."""
    outcome: ParsedRequest | RequestError
    try:
        outcome = parse_request(dialect, raw)
    except RequestError as exc:
        outcome = exc
    if isinstance(outcome, RequestError):
        assert outcome.status == 400
        assert outcome.message
    return outcome


def expected_refusal(dialect: Dialect, body: Any) -> str | None:
    """The field a body is refused for (`""` for one that is not a JSON object), or None if it is
    accepted: the rules of `inbound`, in the order it checks them."""
    if not isinstance(body, dict):
        return ""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "model"
    if not isinstance(body.get("messages"), list):
        return "messages"
    # An explicit null means "not streaming" (the OpenAI SDK sends one); so, as implemented, does any
    # other falsy value (0, "", [], {}), while a truthy non-boolean is refused.
    if not isinstance(body.get("stream") or False, bool):
        return "stream"
    if dialect is Dialect.ANTHROPIC:
        max_tokens = body.get("max_tokens")
        if "max_tokens" not in body or not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            return "max_tokens"
    return None


# Objects with the fields the parser checks, each valid or not, among any others.
_CHECKED_FIELDS = {
    "model": st.sampled_from(["gpt-4o", "claude-haiku-4-5", ""]) | st.text(max_size=6) | json_values(3),
    "messages": st.lists(json_values(3), max_size=3) | json_values(3),
    "stream": st.none() | st.booleans() | json_values(2),
    "max_tokens": st.integers(-(2**63), 2**64 - 1) | json_values(2),
}
bodies = st.one_of(
    st.fixed_dictionaries({}, optional=_CHECKED_FIELDS).flatmap(
        lambda checked: st.dictionaries(REQUEST_KEYS, json_values(4), max_size=3).map(
            lambda extra: {**extra, **checked}
        )
    ),
    json_values(6),  # anything at all, mostly not an object
)


@PROPERTY
@given(dialects, st.binary(max_size=256))
def test_any_bytes_either_parse_or_are_refused_with_a_request_error(dialect: Dialect, raw: bytes) -> None:
    outcome = parse_or_refuse(dialect, raw)

    if isinstance(outcome, ParsedRequest):
        assert outcome.body == orjson.loads(raw)


@PROPERTY
@given(dialects, bodies, st.sampled_from([0, orjson.OPT_INDENT_2]), st.sampled_from([b"", b" ", b"\n\t"]))
def test_a_json_body_is_accepted_exactly_when_the_checked_fields_are_valid(
    dialect: Dialect, body: Any, option: int, padding: bytes
) -> None:
    raw = padding + orjson.dumps(body, option=option) + padding

    outcome = parse_or_refuse(dialect, raw)

    refusal = expected_refusal(dialect, body)
    if refusal is None:
        assert outcome == ParsedRequest(body, body["model"], bool(body.get("stream")))
    else:
        assert isinstance(outcome, RequestError), (refusal, body)
        assert outcome.param == (refusal or None)


@st.composite
def damaged_json(draw: st.DrawFn) -> bytes:
    """A valid request's bytes cut short, with bytes flipped, or with bytes inserted."""
    raw = orjson.dumps(draw(openai_requests() | anthropic_requests()).body)
    position = draw(st.integers(0, len(raw)))
    how = draw(st.sampled_from(["cut", "flip", "insert"]))
    if how == "cut":
        return raw[:position]
    if how == "flip" and position < len(raw):
        return raw[:position] + bytes([raw[position] ^ draw(st.integers(1, 255))]) + raw[position + 1 :]
    return raw[:position] + draw(st.binary(min_size=1, max_size=8)) + raw[position:]


@PROPERTY
@given(dialects, damaged_json())
def test_a_damaged_request_either_parses_or_is_refused_with_a_request_error(
    dialect: Dialect, raw: bytes
) -> None:
    outcome = parse_or_refuse(dialect, raw)

    if isinstance(outcome, ParsedRequest):
        assert expected_refusal(dialect, outcome.body) is None


@PROPERTY
@given(
    st.sampled_from([(Dialect.OPENAI, openai_requests()), (Dialect.ANTHROPIC, anthropic_requests())]).flatmap(
        lambda pair: st.tuples(st.just(pair[0]), pair[1])
    )
)
def test_a_valid_request_round_trips_its_body_model_and_stream_flag(
    dialect_and_request: tuple[Dialect, GeneratedRequest],
) -> None:
    dialect, generated = dialect_and_request
    body = generated.body

    parsed = parse_request(dialect, orjson.dumps(body))

    assert parsed == ParsedRequest(body, body["model"], body.get("stream") is True)
