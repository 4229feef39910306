"""The request translators, through `plan_exchange` as the router calls them:

- a valid request of one dialect becomes a request the other dialect's parser accepts, whose tool
  results answer the tool calls just before them — or, when it holds a feature the other dialect
  cannot express, a `TranslationError` that names the feature;
- any body the parser accepts, however damaged, is planned for either provider or refused with a
  `TranslationError`, never another exception; a translated exchange turns any answer that passes
  `parse_answer` into the client's dialect or a `TranslationError`, and any error body into the
  client's dialect.

That a valid translation keeps its meaning (a round trip) is checked in
tests/dialects/test_round_trips.py."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.dialects import Dialect
from sidecar.dialects.answers import parse_answer
from sidecar.dialects.exchange_plan import Exchange, plan_exchange
from sidecar.dialects.inbound import ParsedRequest, parse_request
from sidecar.errors import MalformedAnswer, RequestError, TranslationError
from tests.properties.strategies import (
    REQUEST_KEYS,
    GeneratedRequest,
    anthropic_requests,
    json_values,
    nesting,
    openai_requests,
    replace_somewhere,
)
from tests.properties.support import or_refusal

PROPERTY = settings(max_examples=100, deadline=None)
OPENAI, ANTHROPIC = Dialect.OPENAI, Dialect.ANTHROPIC
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")


def plan(
    client: Dialect, provider: Dialect, parsed: ParsedRequest, raw: bytes, upstream_model: str
) -> Exchange:
    return plan_exchange(
        client,
        provider,
        body=parsed.body,
        raw=raw,
        requested_model=parsed.model,
        upstream_model=upstream_model,
        default_max_tokens=4096,
        now=1_750_000_000.0,
        stream=parsed.stream,
    )


# --- valid requests --------------------------------------------------------------------------------


def assert_anthropic_conversation(body: dict[str, Any]) -> None:
    """Turns alternate; tool_use ids are ones Anthropic accepts; every tool_result answers a tool_use
    of the assistant turn just before it and comes before the turn's other content."""
    previous_role: str | None = None
    previous_uses: set[str] = set()
    for turn in body["messages"]:
        assert turn["role"] in ("user", "assistant"), turn
        assert turn["role"] != previous_role, body["messages"]
        blocks = turn["content"] if isinstance(turn["content"], list) else [{"type": "text"}]
        results = [block["tool_use_id"] for block in blocks if block["type"] == "tool_result"]
        assert set(results) <= previous_uses, (results, previous_uses)
        kinds = [block["type"] == "tool_result" for block in blocks]
        assert kinds == sorted(kinds, reverse=True), "tool_result blocks must come first"
        previous_uses = {block["id"] for block in blocks if block["type"] == "tool_use"}
        assert all(_SAFE_ID.fullmatch(tool_id) for tool_id in previous_uses), previous_uses
        previous_role = turn["role"]


def assert_openai_conversation(body: dict[str, Any]) -> None:
    """System messages first; every tool message answers a call of the assistant message before
    the run of tool messages it belongs to; tool-call arguments are JSON objects."""
    calls: set[str] = set()
    roles = [message["role"] for message in body["messages"]]
    assert set(roles) <= {"system", "user", "assistant", "tool"}, roles
    assert roles == sorted(roles, key=lambda role: role != "system"), roles
    for message in body["messages"]:
        if message["role"] == "tool":
            assert message["tool_call_id"] in calls, (message, calls)
            continue
        calls = set()
        for call in message.get("tool_calls") or ():
            calls.add(call["id"])
            assert isinstance(orjson.loads(call["function"]["arguments"]), dict)


@PROPERTY
@given(openai_requests(), st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5"]))
def test_a_valid_openai_request_becomes_an_anthropic_request_or_a_refusal_naming_why(
    generated: GeneratedRequest, upstream_model: str
) -> None:
    raw = orjson.dumps(generated.body)
    parsed = parse_request(OPENAI, raw)

    if generated.unsupported is not None:
        with pytest.raises(TranslationError, match=re.escape(generated.unsupported)):
            plan(OPENAI, ANTHROPIC, parsed, raw, upstream_model)
        return
    exchange = plan(OPENAI, ANTHROPIC, parsed, raw, upstream_model)

    upstream = parse_request(ANTHROPIC, exchange.upstream_body)
    assert (upstream.model, upstream.stream) == (upstream_model, parsed.stream)
    assert upstream.body["max_tokens"] >= 1
    assert_anthropic_conversation(upstream.body)


@PROPERTY
@given(anthropic_requests(), st.sampled_from(["gpt-4o", "o3"]))
def test_a_valid_anthropic_request_becomes_an_openai_request_or_a_refusal_naming_why(
    generated: GeneratedRequest, upstream_model: str
) -> None:
    raw = orjson.dumps(generated.body)
    parsed = parse_request(ANTHROPIC, raw)

    if generated.unsupported is not None:
        with pytest.raises(TranslationError, match=re.escape(generated.unsupported)):
            plan(ANTHROPIC, OPENAI, parsed, raw, upstream_model)
        return
    exchange = plan(ANTHROPIC, OPENAI, parsed, raw, upstream_model)

    upstream = parse_request(OPENAI, exchange.upstream_body)
    assert (upstream.model, upstream.stream) == (upstream_model, parsed.stream)
    if parsed.stream:
        assert upstream.body["stream_options"] == {"include_usage": True}  # usage must come back
    token_field = "max_completion_tokens" if upstream_model == "o3" else "max_tokens"
    assert upstream.body[token_field] == parsed.body["max_tokens"]
    assert_openai_conversation(upstream.body)


# --- any body the parser accepts ---------------------------------------------------------------------


@st.composite
def accepted_bodies(draw: st.DrawFn) -> tuple[Dialect, bytes]:
    """A client's dialect and a body of it: a valid request damaged in one place, or random fields
    around the ones the parser requires."""
    client = draw(st.sampled_from([OPENAI, ANTHROPIC]))
    if draw(st.integers(0, 3)):
        body = draw(openai_requests() if client is OPENAI else anthropic_requests()).body
        # Damaged below the fields the parser checks, which tests/properties/test_parse_request.py covers.
        field = draw(st.sampled_from(sorted(set(body) - {"model", "stream", "max_tokens"})))
        body[field] = replace_somewhere(draw, body[field], json_values(6, keys=REQUEST_KEYS))
    else:
        body = draw(st.dictionaries(REQUEST_KEYS, json_values(6, keys=REQUEST_KEYS), max_size=6))
        body.update(model="m", messages=draw(st.lists(json_values(6, keys=REQUEST_KEYS), max_size=3)))
        body.setdefault("max_tokens", 16)
    return client, orjson.dumps(body)


_OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Hi",
                "refusal": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                ],
            },
        }
    ],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 1},
    },
}
_ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 5,
        "output_tokens": 2,
        "cache_read_input_tokens": 1,
        "cache_creation_input_tokens": 0,
    },
}


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """A provider's whole answer or error body: either dialect's, damaged in one place, or anything."""
    if draw(st.integers(0, 3)):
        valid = draw(st.sampled_from([_OPENAI_ANSWER, _ANTHROPIC_ANSWER]))
        return orjson.dumps(replace_somewhere(draw, valid, json_values(4, keys=REQUEST_KEYS)))
    return draw(st.binary(max_size=32) | json_values(6, keys=REQUEST_KEYS).map(orjson.dumps))


@PROPERTY
@given(accepted_bodies(), st.sampled_from([OPENAI, ANTHROPIC]), st.booleans(), answers())
def test_any_accepted_body_is_planned_or_refused_with_a_translation_error(
    client_and_raw: tuple[Dialect, bytes], provider: Dialect, mapped: bool, answer: bytes
) -> None:
    client, raw = client_and_raw
    try:
        parsed = parse_request(client, raw)
    except RequestError:
        return  # damaged where the parser looks: tests/properties/test_parse_request.py
    upstream_model = "upstream-model" if mapped else parsed.model

    exchange = or_refusal(lambda: plan(client, provider, parsed, raw, upstream_model))
    if isinstance(exchange, TranslationError):
        return

    upstream = orjson.loads(exchange.upstream_body)
    assert upstream["model"] == upstream_model
    assert bool(upstream.get("stream")) is parsed.stream
    try:
        parsed_answer = parse_answer(provider, answer)  # the router's check before converting
    except MalformedAnswer:
        parsed_answer = None
    if (convert := exchange.convert_response) is not None and parsed_answer is not None:
        converted = or_refusal(partial(convert, parsed_answer))
        assert isinstance(converted, TranslationError) or isinstance(orjson.loads(converted), dict)
    if exchange.convert_error is not None:
        status, error = exchange.convert_error(429, answer)
        assert status == 429
        assert isinstance(orjson.loads(error), dict)


@pytest.mark.parametrize(
    ("client", "provider", "where"),
    [
        (OPENAI, OPENAI, "metadata"),  # the same dialect, re-serialised for another model name
        (ANTHROPIC, ANTHROPIC, "metadata"),
        (OPENAI, ANTHROPIC, "parameters"),  # a tool's schema, carried across
        (ANTHROPIC, OPENAI, "input_schema"),
    ],
)
def test_a_body_nested_deeper_than_orjson_writes_is_refused_with_a_translation_error(
    client: Dialect, provider: Dialect, where: str
) -> None:
    """orjson reads 1024 levels but writes 254: the candidate is skipped, and a client no candidate
    can serve gets a 400 naming the depth (tests/routing/test_decisions_depth.py)."""
    deep = nesting(300)
    body: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    if where == "metadata":
        body["metadata"] = {"x": deep}
    elif where == "parameters":
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"x": deep}}}]
    else:
        body["tools"] = [{"name": "f", "input_schema": {"x": deep}}]
    raw = json_by_hand(body)
    try:
        parsed = parse_request(client, raw)
    except RequestError:
        return  # refused at the edge: a 400, as it should be

    with pytest.raises(TranslationError, match="nested deeper than 254 levels"):
        plan(client, provider, parsed, raw, "upstream-model")


def json_by_hand(value: Any) -> bytes:
    """JSON that orjson will not write (too deep): arrays and objects by hand, scalars by orjson."""
    if isinstance(value, list):
        return b"[" + b",".join(json_by_hand(item) for item in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(k) + b":" + json_by_hand(v) for k, v in value.items()) + b"}"
    return orjson.dumps(value)
