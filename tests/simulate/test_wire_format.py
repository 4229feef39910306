"""The bytes on the wire, checked without an SDK in between: framing, field order of events, error
shapes, and the small formats (Go durations, word splitting) the dialects share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.simulate import Reply, SimulatedProvider, ToolCall
from sidecar.simulate.wire import go_duration, split_fragments, split_words

OPENAI_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {**OPENAI_BODY, "model": "claude-haiku-4-5", "max_tokens": 50}
OPENAI_AUTH = {"authorization": "Bearer k"}
ANTHROPIC_AUTH = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.12, "120ms"),
        (1.5, "1.5s"),
        (20, "20s"),
        (360, "6m0s"),
        (3725, "1h2m5s"),
        (59.999, "59.999s"),
        (float("nan"), "0s"),  # a test's nonsense Retry-After: no reset to tell, never a crash
        (float("inf"), "0s"),
    ],
)
def test_durations_are_written_like_go(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@given(st.text())
def test_word_deltas_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(split_words(text)) == text
    assert "".join(split_fragments(text)) == text


def test_words_keep_their_leading_space_like_tokens_do() -> None:
    assert split_words("Hello from  here") == ["Hello", " from", "  here"]


async def test_an_openai_stream_is_data_lines_ending_in_done(raw: httpx.AsyncClient) -> None:
    async with SimulatedProvider("openai") as sim:
        sim.script(Reply(text="a b"))
        body = {**OPENAI_BODY, "stream": True}
        response = await raw.post(f"{sim.base_url}/chat/completions", json=body, headers=OPENAI_AUTH)

    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"]
    assert response.headers["openai-processing-ms"].isdigit()
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    chunks = [orjson.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "a"},
        {"content": " b"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all("usage" not in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1


async def test_an_openai_tool_call_alone_opens_with_role_and_call_header(raw: httpx.AsyncClient) -> None:
    async with SimulatedProvider("openai") as sim:
        sim.script(Reply(tool_call=ToolCall("f", {"x": 1}, id="call_9")))
        body = {**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}}
        response = await raw.post(f"{sim.base_url}/chat/completions", json=body, headers=OPENAI_AUTH)

    chunks = [orjson.loads(f.removeprefix("data: ")) for f in response.text.split("\n\n")[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}}
        ],
        "refusal": None,
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_an_openai_completion_has_every_field_of_the_real_one(raw: httpx.AsyncClient) -> None:
    async with SimulatedProvider("openai") as sim:
        response = await raw.post(f"{sim.base_url}/chat/completions", json=OPENAI_BODY, headers=OPENAI_AUTH)

    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    choice = body["choices"][0]
    assert choice["logprobs"] is None
    assert choice["message"]["refusal"] is None
    assert "tool_calls" not in choice["message"]


async def test_an_anthropic_stream_is_named_events_with_a_ping_after_the_first_block_start(
    raw: httpx.AsyncClient,
) -> None:
    async with SimulatedProvider("anthropic") as sim:
        sim.script(Reply(text="a b", usage=(5, 2)))
        body = {**ANTHROPIC_BODY, "stream": True}
        response = await raw.post(f"{sim.base_url}/v1/messages", json=body, headers=ANTHROPIC_AUTH)

    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["request-id"].startswith("req_")
    frames = response.text.split("\n\n")
    assert frames[-1] == ""
    events = []
    for frame in frames[:-1]:
        event_line, data_line = frame.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        events.append(data)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["input_tokens"]) == ([], None, 5)
    assert events[3]["delta"] == {"type": "text_delta", "text": "a"}
    assert events[6] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2},
    }


async def test_an_anthropic_tool_stream_sends_partial_json_from_an_empty_fragment(
    raw: httpx.AsyncClient,
) -> None:
    async with SimulatedProvider("anthropic") as sim:
        sim.script(Reply(tool_call=ToolCall("f", {"x": 1}, id="toolu_9")))
        body = {**ANTHROPIC_BODY, "stream": True}
        response = await raw.post(f"{sim.base_url}/v1/messages", json=body, headers=ANTHROPIC_AUTH)

    events = [orjson.loads(f.split("\n")[1].removeprefix("data: ")) for f in response.text.split("\n\n")[:-1]]
    assert events[1]["content_block"] == {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}
    fragments = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert fragments[0] == ""
    assert "".join(fragments) == '{"x":1}'


OPENAI_404 = {
    "message": "Invalid URL (GET /v1/nope)",
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}
ANTHROPIC_404 = {"type": "not_found_error", "message": "Not Found"}


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [("openai", {"error": OPENAI_404}), ("anthropic", {"type": "error", "error": ANTHROPIC_404})],
)
async def test_an_unknown_path_is_404_in_the_dialects_shape(
    raw: httpx.AsyncClient, dialect: Literal["openai", "anthropic"], expected: dict[str, object]
) -> None:
    async with SimulatedProvider(dialect) as sim:
        response = await raw.get(f"http://127.0.0.1:{sim.port}/v1/nope")
    assert response.status_code == 404
    assert response.json() == expected
    assert sim.requests == []


async def test_malformed_json_is_400_in_both_dialects(raw: httpx.AsyncClient) -> None:
    async with SimulatedProvider("openai") as oa, SimulatedProvider("anthropic") as an:
        bad = b'{"model": '
        r1 = await raw.post(f"{oa.base_url}/chat/completions", content=bad, headers=OPENAI_AUTH)
        r2 = await raw.post(f"{an.base_url}/v1/messages", content=bad, headers=ANTHROPIC_AUTH)

    assert r1.status_code == r2.status_code == 400
    assert r1.json()["error"]["message"].startswith("We could not parse the JSON body of your request.")
    assert r2.json()["error"]["type"] == "invalid_request_error"
    assert oa.requests[0].body is None
