"""The pure translation of the typed chat (`sidecar/ingress/grpc/typed.py`): a ChatRequest into a
body of either dialect, either dialect's answers and streams back into ChatResponse / ChatChunks,
and the dialect a request is built in."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.config.loader import load_config_text
from sidecar.dialects import Dialect
from sidecar.errors import RequestError
from sidecar.ingress.grpc._generated import gateway_pb2 as pb
from sidecar.ingress.grpc.typed import (
    TypedStream,
    chat_body,
    chat_response,
    openai_body,
    openai_chunks,
    pick_dialect,
)
from sidecar.routing.table import RouteTable
from tests.support.memory_transport import anthropic_at, openai_at
from tests.support.running import config_text, limits_alternative_rule


def _user(text: str) -> pb.Message:
    return pb.Message(role="user", parts=[pb.Part(text=text)])


def _one(role: str, *parts: pb.Part, **fields: Any) -> pb.ChatRequest:
    """A request of one message."""
    return pb.ChatRequest(model="m", messages=[pb.Message(role=role, parts=parts, **fields)])


def _table(*providers: tuple[str, dict[str, Any]]) -> RouteTable:
    names = [name for name, _ in providers]
    text = config_text(dict(providers), [limits_alternative_rule(names[:1], names[1:], pattern="^gpt-")])
    loaded = load_config_text(text, source="test", env={})
    config = loaded.config
    return RouteTable(loaded, config.rules_by_priority(), dict(config.providers), {})


def test_a_typed_request_becomes_an_openai_body() -> None:
    request = pb.ChatRequest(
        model="gpt-4o",
        messages=[pb.Message(role="developer", parts=[pb.Part(text="Be brief.")]), _user("Hi")],
        max_tokens=20,
        temperature=0.7,
        stop=["END"],
        tools=[pb.Tool(name="f", parameters_json='{"type":"object"}')],
        tool_choice="f",
    )
    assert openai_body(request, stream=True) == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 20,
        "temperature": 0.7,
        "stop": ["END"],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_temperature_zero_is_sent_and_an_unset_one_is_not() -> None:
    assert (
        openai_body(pb.ChatRequest(model="m", messages=[_user("x")], temperature=0.0), stream=False)[
            "temperature"
        ]
        == 0.0
    )
    assert "temperature" not in openai_body(pb.ChatRequest(model="m", messages=[_user("x")]), stream=False)


def test_the_same_request_in_anthropic_is_the_dialects_own_translation() -> None:
    request = pb.ChatRequest(
        model="gpt-4o",
        messages=[pb.Message(role="system", parts=[pb.Part(text="S")]), _user("Hi")],
        temperature=1.5,
        tool_choice="required",
        tools=[pb.Tool(name="f", description="does f")],
    )
    dialect, body = chat_body(request, Dialect.ANTHROPIC, stream=False, default_max_tokens=321)
    assert dialect is Dialect.ANTHROPIC
    assert body == {
        "model": "gpt-4o",
        "max_tokens": 321,
        "messages": [{"role": "user", "content": "Hi"}],
        "system": "S",
        "tools": [
            {"name": "f", "input_schema": {"type": "object", "properties": {}}, "description": "does f"}
        ],
        "tool_choice": {"type": "any"},
        "temperature": 1.0,  # Anthropic's range, as for an OpenAI client's request
    }


def test_a_request_anthropic_cannot_express_is_built_in_openai_for_the_router_to_judge() -> None:
    image = pb.Part(image=pb.Image(url="ftp://example.com/x.png"))
    request = pb.ChatRequest(model="gpt-4o", messages=[pb.Message(role="user", parts=[image])])
    dialect, body = chat_body(request, Dialect.ANTHROPIC, stream=False, default_max_tokens=1)
    assert dialect is Dialect.OPENAI
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}
    ]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.ChatRequest(messages=[_user("x")]), "'model' is required"),
        (pb.ChatRequest(model="m"), "at least one message"),
        (pb.ChatRequest(model="m", messages=[_user("x")], max_tokens=-1), "must not be negative"),
        (_one("tool", pb.Part(text="r")), "tool_call_id"),
        (_one("system", pb.Part(image=pb.Image(url="u"))), "parts[0]: a system message holds text only"),
        (_one("user", pb.Part(), pb.Part(text="x")), "an empty part"),
        (_one("user", pb.Part(image=pb.Image(data=b"x"))), "media_type"),
        (_one("user", pb.Part(image=pb.Image())), "set 'url' or 'data'"),
        (pb.ChatRequest(model="m", messages=[_user("x")], tools=[pb.Tool()]), "a tool needs a 'name'"),
        (pb.ChatRequest(model="m", messages=[_user("x")], tools=[pb.Tool(name="f", parameters_json="[")]),
         "tools[0].parameters_json: not valid JSON"),
        (pb.ChatRequest(model="m", messages=[_user("x")], tools=[pb.Tool(name="f", parameters_json="[]")]),
         "must be a JSON object"),
        (_one("assistant", tool_calls=[pb.ToolCall(name="f")]), "needs its 'id' and 'name'"),
    ],
)  # fmt: skip
def test_input_that_is_no_request_names_the_field(request_: pb.ChatRequest, message: str) -> None:
    with pytest.raises(
        RequestError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
    ):
        openai_body(request_, stream=False)


def test_an_assistant_turn_with_tool_calls_and_a_tool_result() -> None:
    request = pb.ChatRequest(
        model="m",
        messages=[
            pb.Message(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="f")]),
            pb.Message(role="tool", tool_call_id="c1", parts=[pb.Part(text="4"), pb.Part(text="2")]),
        ],
    )
    assert openai_body(request, stream=False)["messages"] == [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]  # fmt: skip


OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "choices": [
        {
            "message": {
                "role": "assistant",
                "content": "Sure.",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 3},
}
ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "model": "claude-x",
    "content": [{"type": "text", "text": "Sure."}, {"type": "tool_use", "id": "c", "name": "f", "input": {}}],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 3},
}


@pytest.mark.parametrize(
    ("dialect", "answer", "answer_id"),
    [(Dialect.OPENAI, OPENAI_ANSWER, "chatcmpl-1"), (Dialect.ANTHROPIC, ANTHROPIC_ANSWER, "chatcmpl-msg_1")],
)
def test_an_answer_of_either_dialect_means_the_same_typed(
    dialect: Dialect, answer: Any, answer_id: str
) -> None:
    response = chat_response(dialect, answer, created=0)
    assert [part.text for part in response.message.parts] == ["Sure."]
    [call] = response.message.tool_calls
    assert (call.id, call.name, call.arguments_json, call.index) == ("c", "f", "{}", 0)
    assert (response.finish_reason, response.id) == ("tool_calls", answer_id)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 3), "cached input included"


def test_an_answer_without_usage_or_choices_still_reads() -> None:
    response = chat_response(Dialect.OPENAI, {"choices": [{"message": {"content": None}}]}, created=0)
    assert (len(response.message.parts), response.HasField("usage"), response.finish_reason) == (0, False, "")


def _frames(*payloads: Any, event: bool = False) -> bytes:
    out = b""
    for payload in payloads:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        name = payload.get("type", "").encode() if event and isinstance(payload, dict) else b""
        out += (b"event: " + name + b"\n" if name else b"") + b"data: " + data + b"\n\n"
    return out


def test_an_openai_stream_becomes_chunks() -> None:
    reader = TypedStream(Dialect.OPENAI, created=0)
    delta = {"tool_calls": [{"index": 1, "id": "c", "function": {"name": "f", "arguments": '{"a"'}}]}
    chunks = reader.feed(
        _frames(
            {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"delta": {"content": "Hi"}}]},
            {"choices": [{"delta": delta, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}},
            b"[DONE]",
        )
    )
    assert [chunk.ListFields()[0][0].name for chunk in chunks] == [
        "text_delta", "tool_call_delta", "finish_reason", "usage",
    ]  # fmt: skip
    assert (chunks[1].tool_call_delta.index, chunks[1].tool_call_delta.arguments_json) == (1, '{"a"')
    assert reader.complete
    assert reader.error is None


def test_an_anthropic_stream_becomes_the_same_chunks() -> None:
    reader = TypedStream(Dialect.ANTHROPIC, created=0)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 2}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "c", "name": "f"},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]
    chunks = reader.feed(_frames(*events, event=True))
    assert "".join(chunk.text_delta for chunk in chunks) == "Hi"
    calls = [chunk.tool_call_delta for chunk in chunks if chunk.HasField("tool_call_delta")]
    assert [(c.index, c.id, c.name, c.arguments_json) for c in calls] == [
        (0, "c", "f", ""),
        (0, "", "", "{}"),
    ]
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["tool_calls"]
    [usage] = [chunk.usage for chunk in chunks if chunk.HasField("usage")]
    assert (usage.input_tokens, usage.output_tokens) == (2, 1)
    assert reader.complete


@pytest.mark.parametrize("dialect", [Dialect.OPENAI, Dialect.ANTHROPIC])
def test_an_in_band_error_or_a_missing_end_leaves_the_stream_incomplete(dialect: Dialect) -> None:
    error = (
        {"type": "error", "error": {"type": "api_error", "message": "boom"}}
        if dialect is Dialect.ANTHROPIC
        else {"error": {"message": "boom", "type": "server_error"}}
    )
    reader = TypedStream(dialect, created=0)
    assert reader.feed(_frames(error, event=True)) == []
    assert (reader.error, reader.complete) == ("boom", False)
    quiet = TypedStream(dialect, created=0)
    quiet.feed(b"data: not json\n\n")
    assert (quiet.error, quiet.complete) == (None, False)


def test_events_that_cannot_be_read_are_skipped() -> None:
    anthropic = TypedStream(Dialect.ANTHROPIC, created=0)
    assert anthropic.feed(_frames({"type": "message_start"}, event=True)) == [], "no message in it"
    openai = TypedStream(Dialect.OPENAI, created=0)
    assert openai.feed(_frames({"choices": [7]})) == [], "malformed: dropped"
    assert openai_chunks([1]) == []
    assert [chunk.text_delta for chunk in openai_chunks({"choices": [3, {"delta": {"content": "b"}}]})] == [
        "b"
    ]


def test_the_dialect_is_the_first_candidate_not_limited() -> None:
    table = _table(("a", openai_at("a")), ("b", anthropic_at("b")))
    assert pick_dialect(table, "gpt-4o", lambda candidate: False) is Dialect.OPENAI
    assert pick_dialect(table, "gpt-4o", lambda candidate: candidate.provider_id == "a") is Dialect.ANTHROPIC
    assert pick_dialect(table, "gpt-4o", lambda candidate: True) is Dialect.OPENAI, "all limited: the first"
    assert pick_dialect(table, "claude-x", lambda candidate: False) is Dialect.OPENAI, (
        "no rule: the router says"
    )
    assert pick_dialect(None, "gpt-4o", lambda candidate: False) is Dialect.OPENAI
