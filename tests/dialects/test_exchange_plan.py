"""Per candidate: the body passes through to a provider of the client's dialect, and is translated,
with the answer, the error and the stream translated back, for a provider of the other one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.anthropic_to_openai_stream import AnthropicToOpenAIStream
from sidecar.dialects.exchange_plan import Exchange, PassthroughStream, plan_exchange
from sidecar.dialects.inbound import parse_request
from sidecar.dialects.openai_to_anthropic_request import openai_to_anthropic_request
from sidecar.dialects.openai_to_anthropic_stream import OpenAIToAnthropicStream
from sidecar.dialects.sse import SseEvent
from sidecar.errors import TranslationError
from tests.dialects.fixtures import HI, anthropic_request, load_json, load_sse, openai_request
from tests.dialects.sdk_streams import DONE, run

OPENAI, ANTHROPIC = Dialect.OPENAI, Dialect.ANTHROPIC
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def plan(
    client: Dialect, provider: Dialect, body: dict[str, Any], upstream_model: str, **kw: Any
) -> Exchange:
    return plan_exchange(
        client,
        provider,
        body=body,
        raw=orjson.dumps(body, option=orjson.OPT_INDENT_2),  # spelled differently from a re-serialisation
        requested_model=body["model"],
        upstream_model=upstream_model,
        default_max_tokens=1024,
        now=1_764_000_000.5,
        **kw,
    )


@pytest.mark.parametrize(
    ("dialect", "body"), [(OPENAI, openai_request(HI)), (ANTHROPIC, anthropic_request(HI))]
)
def test_the_same_dialect_passes_the_client_s_bytes_through(dialect: Dialect, body: dict[str, Any]) -> None:
    exchange = plan(dialect, dialect, body, body["model"])

    assert exchange.upstream_body == orjson.dumps(body, option=orjson.OPT_INDENT_2)
    assert (exchange.convert_response, exchange.convert_error) == (None, None)
    assert isinstance(exchange.new_stream_converter(), PassthroughStream)


def test_a_mapped_model_is_the_only_change_to_a_same_dialect_body() -> None:
    body = openai_request(HI, temperature=0.5)
    exchange = plan(OPENAI, OPENAI, body, "gpt-4o-mini")

    assert orjson.loads(exchange.upstream_body) == {**body, "model": "gpt-4o-mini"}


def test_an_openai_stream_asks_for_usage_and_the_client_does_not_see_the_usage_chunk() -> None:
    body = openai_request(HI, stream=True, stream_options={"other": 1})
    exchange = plan(OPENAI, OPENAI, body, "gpt-4o", stream=True)
    events = load_sse("openai_text.sse")
    frames = run(exchange.new_stream_converter(), events)

    assert orjson.loads(exchange.upstream_body)["stream_options"] == {"other": 1, "include_usage": True}
    usage_only = [e.raw for e in events if e.data != "[DONE]" and orjson.loads(e.data)["choices"] == []]
    assert usage_only, "the fixture has a usage chunk"
    assert frames == [e.raw for e in events if e.raw not in usage_only]


def test_an_openai_stream_whose_client_asked_for_usage_keeps_it() -> None:
    body = openai_request(HI, stream=True, stream_options={"include_usage": True})
    exchange = plan(OPENAI, OPENAI, body, body["model"], stream=True)
    events = load_sse("openai_text.sse")

    assert exchange.upstream_body == orjson.dumps(body, option=orjson.OPT_INDENT_2)
    assert run(exchange.new_stream_converter(), events) == [e.raw for e in events]


@pytest.mark.parametrize(("dialect", "terminator"), [(OPENAI, DONE), (ANTHROPIC, MESSAGE_STOP)])
def test_a_passed_through_stream_missing_its_terminator_gets_one_once(
    dialect: Dialect, terminator: bytes
) -> None:
    stream = PassthroughStream(dialect)
    assert stream.feed(SseEvent(data='{"x": 1}', raw=b'data: {"x": 1}\n\n')) == [b'data: {"x": 1}\n\n']
    assert stream.finish() == [terminator]
    assert stream.finish() == []


@pytest.mark.parametrize("name", ["openai_text.sse", "anthropic_text.sse"])
def test_a_passed_through_stream_with_its_terminator_gets_nothing_more(name: str) -> None:
    dialect = OPENAI if name.startswith("openai") else ANTHROPIC
    stream = PassthroughStream(dialect)
    for event in load_sse(name):
        stream.feed(event)
    assert stream.finish() == []


def test_an_openai_client_on_an_anthropic_provider_is_translated_both_ways() -> None:
    body = openai_request(HI, stream=True)
    exchange = plan(OPENAI, ANTHROPIC, body, "claude-sonnet-4-5", stream=True)

    assert orjson.loads(exchange.upstream_body) == openai_to_anthropic_request(
        body, upstream_model="claude-sonnet-4-5", default_max_tokens=1024
    )
    assert exchange.convert_response is not None
    assert exchange.convert_error is not None
    answer = orjson.loads(exchange.convert_response(load_json("anthropic_message_tool_use.json")))
    assert (answer["object"], answer["created"]) == ("chat.completion", 1_764_000_000)
    error = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    status, converted = exchange.convert_error(529, error)
    assert (status, orjson.loads(converted)["error"]["code"]) == (529, "overloaded")
    assert isinstance(exchange.new_stream_converter(), AnthropicToOpenAIStream)


def test_an_anthropic_client_on_an_openai_provider_streams_under_the_requested_model() -> None:
    body = anthropic_request(HI, stream=True)
    exchange = plan(ANTHROPIC, OPENAI, body, "gpt-4o", stream=True)
    converter = exchange.new_stream_converter()

    assert orjson.loads(exchange.upstream_body)["stream_options"] == {"include_usage": True}
    assert isinstance(converter, OpenAIToAnthropicStream)
    [start] = converter.feed(SseEvent(data='{"id": "c1", "choices": []}'))
    assert orjson.loads(start.split(b"data: ", 1)[1])["message"]["model"] == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("client", "provider", "body", "reason"),
    [
        (OPENAI, ANTHROPIC, openai_request(HI, n=2), "n > 1"),
        (ANTHROPIC, OPENAI, anthropic_request(HI, thinking={"type": "enabled"}), "extended thinking"),
    ],
)
def test_a_request_the_other_dialect_cannot_express_makes_the_candidate_ineligible(
    client: Dialect, provider: Dialect, body: dict[str, Any], reason: str
) -> None:
    with pytest.raises(TranslationError, match=reason):
        plan(client, provider, body, "m")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "cheap", "messages": [], "model": "dear"}',  # repeated: parsers disagree
        b'{"model": "cheap", "messages": [], "mod\\u0065l": "dear"}',  # the same key, escaped
        b'{"model": "dear", "messages": [], "stream": true, "stream": false}',
    ],
)
def test_a_body_a_provider_could_read_differently_is_sent_as_detour_parsed_it(raw: bytes) -> None:
    body = orjson.loads(raw)
    exchange = plan_exchange(
        OPENAI, OPENAI, body=body, raw=raw, requested_model="dear", upstream_model="dear",
        default_max_tokens=1024, now=0,
    )  # fmt: skip
    sent = exchange.upstream_body
    assert sent.count(b'"model"') == 1
    assert b"\\u" not in sent
    assert orjson.loads(sent) == body


def test_an_ordinary_body_goes_upstream_byte_for_byte() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    exchange = plan_exchange(
        OPENAI, OPENAI, body=orjson.loads(raw), raw=raw, requested_model="m", upstream_model="m",
        default_max_tokens=1024, now=0,
    )  # fmt: skip
    assert exchange.upstream_body is raw


# --- nested deeper than orjson writes (it reads 1024 levels, writes 254) -----------------------------------

DEEP = b"[" * 300 + b"]" * 300


@pytest.mark.parametrize(("client", "provider"), [(OPENAI, OPENAI), (OPENAI, ANTHROPIC), (ANTHROPIC, OPENAI)])
def test_a_body_nested_deeper_than_orjson_writes_is_refused_when_it_must_be_written_again(
    client: Dialect, provider: Dialect
) -> None:
    raw = b'{"model":"m","max_tokens":1,"messages":[],"metadata":' + DEEP + b"}"
    if client is not provider:  # metadata is not carried across; a tool's schema is
        schema = b'{"type":"object","properties":{"x":' + DEEP + b"}}"
        tool = b'{"type":"function","function":{"name":"f","parameters":' + schema + b"}}"
        if client is ANTHROPIC:
            tool = b'{"name":"f","input_schema":' + schema + b"}"
        raw = b'{"model":"m","max_tokens":1,"messages":[],"tools":[' + tool + b"]}"
    body = parse_request(client, raw).body

    with pytest.raises(TranslationError, match="nested deeper than 254 levels"):
        plan_exchange(
            client, provider, body=body, raw=raw, requested_model="m", upstream_model="other",
            default_max_tokens=1, now=0.0,
        )  # fmt: skip
    passed_through = plan_exchange(
        client, client, body=body, raw=raw, requested_model="m", upstream_model="m",
        default_max_tokens=1, now=0.0,
    )  # fmt: skip
    assert passed_through.upstream_body is raw, "the client's own bytes need no writing"


@pytest.mark.parametrize(
    ("client", "provider", "answer"),
    [
        (
            OPENAI,
            ANTHROPIC,
            b'{"id":"msg_1","model":"m","content":[{"type":"tool_use","id":"t","name":"f","input":{"x":'
            + DEEP
            + b"}}]}",
        ),
        (
            ANTHROPIC,
            OPENAI,
            b'{"id":"c","model":"m","choices":[{"message":{"tool_calls":[{"id":"t","function":{"name":"f",'
            b'"arguments":' + orjson.dumps('{"x":' + DEEP.decode() + "}") + b"}}]}}]}",
        ),
    ],
    ids=["anthropic-answer", "openai-answer"],
)
def test_an_answer_nested_deeper_than_orjson_writes_is_a_translation_error(
    client: Dialect, provider: Dialect, answer: bytes
) -> None:
    exchange = plan(client, provider, openai_request(HI) if client is OPENAI else anthropic_request(HI), "m")
    assert exchange.convert_response is not None

    with pytest.raises(TranslationError, match="nested deeper than 254 levels"):
        exchange.convert_response(orjson.loads(answer))
