"""Hypothesis properties: a request or a whole answer translated to the other dialect and back keeps
its meaning (the two directions of `sidecar.dialects` checked against each other)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from anthropic.types import Message
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

from sidecar.dialects.anthropic_to_openai_request import anthropic_to_openai_request
from sidecar.dialects.anthropic_to_openai_response import anthropic_to_openai_response
from sidecar.dialects.openai_to_anthropic_request import openai_to_anthropic_request
from sidecar.dialects.openai_to_anthropic_response import openai_to_anthropic_response
from tests.dialects.strategies import FAST, names, texts, tool_calls

# ---------------------------------------------------------------- requests


@st.composite
def openai_requests(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": draw(st.sampled_from(["system", "developer"])), "content": text}
        for text in draw(st.lists(texts, max_size=2))
    ]
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            messages.append({"role": "user", "content": draw(texts)})
        else:
            parts = draw(st.lists(texts, min_size=1, max_size=3))
            messages.append({"role": "user", "content": [{"type": "text", "text": t} for t in parts]})
        assistant: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | texts)}
        calls = draw(st.none() | tool_calls)
        if calls:
            assistant["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": orjson.dumps(a).decode()}}
                for i, n, a in calls
            ]
        elif assistant["content"] is None:
            assistant["content"] = draw(texts)
        messages.append(assistant)
        messages.extend(
            {"role": "tool", "tool_call_id": i, "content": draw(texts)} for i, _, _ in calls or ()
        )
    body: dict[str, Any] = {"model": "gpt-4o", "messages": messages}
    tool_names = draw(st.lists(names, max_size=3, unique=True))
    if tool_names:
        body["tools"] = [
            {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
            for n in tool_names
        ]
        body["tool_choice"] = draw(
            st.sampled_from(
                ["auto", "none", "required", {"type": "function", "function": {"name": tool_names[0]}}]
            )
        )
    stop = draw(st.none() | texts | st.lists(texts, min_size=1, max_size=4))
    if stop is not None:
        body["stop"] = stop
    token_field = draw(st.sampled_from([None, "max_tokens", "max_completion_tokens"]))
    if token_field:
        body[token_field] = draw(st.integers(1, 100_000))
    temperature = draw(st.none() | st.floats(0, 2))
    if temperature is not None:
        body["temperature"] = temperature
    return body


def request_meaning(body: dict[str, Any]) -> dict[str, Any]:
    """What an OpenAI request asks for, independent of how it is spelled."""

    def texts_of(content: Any) -> list[str]:
        if content is None:
            return []
        parts = [content] if isinstance(content, str) else [part["text"] for part in content]
        return [part for part in parts if part]

    system, conversation = [], []
    for message in body["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(texts_of(message["content"]))
        elif role == "tool":
            conversation.append(("result", message["tool_call_id"], "".join(texts_of(message["content"]))))
        else:
            conversation.extend((role, text) for text in texts_of(message.get("content")))
            for call in message.get("tool_calls") or ():
                function = call["function"]
                conversation.append(
                    ("call", call["id"], function["name"], orjson.loads(function["arguments"]))
                )
    stop = body.get("stop")
    return {
        "system": system,
        "conversation": conversation,
        "tools": [tool["function"]["name"] for tool in body.get("tools") or ()],
        "tool_choice": body.get("tool_choice"),
        "stop": [stop] if isinstance(stop, str) else stop,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
    }


@FAST
@given(openai_requests())
def test_an_openai_request_translated_to_anthropic_and_back_keeps_its_meaning(body: dict[str, Any]) -> None:
    there = openai_to_anthropic_request(body, upstream_model="claude-sonnet-4-5", default_max_tokens=4096)
    roles = [message["role"] for message in there["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), "Anthropic turns must alternate"
    back = anthropic_to_openai_request(there, upstream_model="gpt-4o")

    expected = request_meaning(body)
    expected["max_tokens"] = expected["max_tokens"] or 4096
    assert request_meaning(back) == expected
    if "temperature" in body:
        assert back["temperature"] == min(body["temperature"], 1.0)


# ---------------------------------------------------------------- responses


@st.composite
def openai_completions(draw: st.DrawFn) -> dict[str, Any]:
    calls = draw(st.none() | tool_calls)
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | texts), "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": orjson.dumps(a).decode()}}
            for i, n, a in calls
        ]
    finish = draw(st.sampled_from(["tool_calls", "stop"] if calls else ["stop", "length", "content_filter"]))
    prompt, cached = draw(st.integers(0, 10**6)), draw(st.none() | st.integers(0, 10**4))
    completion = draw(st.integers(0, 10**5))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt + (cached or 0),
        "completion_tokens": completion,
        "total_tokens": prompt + (cached or 0) + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {
        "id": "chatcmpl-" + draw(st.from_regex(r"[A-Za-z0-9]{6,20}", fullmatch=True)),
        "object": "chat.completion",
        "created": 1,
        "model": draw(st.sampled_from(["gpt-4o", "gpt-4.1-mini", "o3"])),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


@FAST
@given(openai_completions())
def test_an_openai_completion_translated_to_anthropic_and_back_keeps_its_meaning(
    body: dict[str, Any],
) -> None:
    there = openai_to_anthropic_response(body)
    Message.model_validate(there)
    back = anthropic_to_openai_response(there, created=body["created"])
    ChatCompletion.model_validate(back)

    original, returned = body["choices"][0], back["choices"][0]
    calls = original["message"].get("tool_calls")
    assert back["id"] == body["id"]
    assert back["model"] == body["model"]
    assert returned["message"]["content"] == (original["message"]["content"] or (None if calls else ""))
    assert [
        (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in returned["message"].get("tool_calls") or ()
    ] == [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in calls or ()]
    assert returned["finish_reason"] == ("tool_calls" if calls else original["finish_reason"])
    cached = (body["usage"].get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert back["usage"] == {**body["usage"], "prompt_tokens_details": {"cached_tokens": cached}}


@st.composite
def anthropic_messages(draw: st.DrawFn) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": t} for t in draw(st.lists(texts, max_size=3))]
    calls = draw(st.none() | tool_calls)
    content.extend({"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls or ())
    reasons = ["tool_use"] if calls else ["end_turn", "max_tokens", "stop_sequence", "refusal"]
    return {
        "id": "msg_" + draw(st.from_regex(r"[A-Za-z0-9]{6,24}", fullmatch=True)),
        "type": "message",
        "role": "assistant",
        "model": draw(st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5"])),
        "content": content,
        "stop_reason": draw(st.sampled_from(reasons)),
        "stop_sequence": None,
        "usage": {
            "input_tokens": draw(st.integers(0, 10**6)),
            "cache_creation_input_tokens": draw(st.integers(0, 10**4)),
            "cache_read_input_tokens": draw(st.integers(0, 10**4)),
            "output_tokens": draw(st.integers(0, 10**5)),
        },
    }


@FAST
@given(anthropic_messages())
def test_an_anthropic_message_translated_to_openai_and_back_keeps_its_meaning(body: dict[str, Any]) -> None:
    there = anthropic_to_openai_response(body, created=1)
    ChatCompletion.model_validate(there)
    back = openai_to_anthropic_response(there)
    Message.model_validate(back)

    def answer(message: dict[str, Any]) -> tuple[str, list[tuple[str, str, Any]]]:
        text = "".join(block["text"] for block in message["content"] if block["type"] == "text")
        uses = [(b["id"], b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"]
        return text, uses

    assert back["id"] == body["id"]
    assert back["model"] == body["model"]
    assert answer(back) == answer(body)
    assert back["stop_reason"] == {"stop_sequence": "end_turn"}.get(body["stop_reason"], body["stop_reason"])
    usage, returned = body["usage"], back["usage"]
    assert returned["input_tokens"] == usage["input_tokens"] + usage["cache_creation_input_tokens"]
    assert returned["cache_read_input_tokens"] == usage["cache_read_input_tokens"]
    assert returned["output_tokens"] == usage["output_tokens"]
