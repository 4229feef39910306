"""The pure pieces of resuming a stream: reading text deltas, prefill, the prefix gate, frames."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.dialects import Dialect
from sidecar.dialects.continuation import ContinuationFrames, PrefixGate, prefill_request, read_delta
from sidecar.dialects.sse import SseDecoder, SseEvent


def openai_chunk(delta: dict, finish: str | None = None) -> SseEvent:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return SseEvent(orjson.dumps({"choices": [choice]}).decode())


def anthropic_event(payload: dict) -> SseEvent:
    return SseEvent(orjson.dumps(payload).decode(), payload["type"])


@pytest.mark.parametrize(
    ("dialect", "event", "text", "finish", "plain"),
    [
        (Dialect.OPENAI, openai_chunk({"content": "Hi"}), "Hi", None, True),
        (Dialect.OPENAI, openai_chunk({}, "stop"), "", "stop", True),
        (Dialect.OPENAI, openai_chunk({"tool_calls": [{"index": 0}]}), "", None, False),
        (Dialect.OPENAI, openai_chunk({"refusal": "no"}), "", None, False),
        (
            Dialect.ANTHROPIC,
            anthropic_event(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Yo"}}
            ),
            "Yo",
            None,
            True,
        ),
        (
            Dialect.ANTHROPIC,
            anthropic_event(
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "{"},
                }
            ),
            "",
            None,
            False,
        ),
        (
            Dialect.ANTHROPIC,
            anthropic_event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}),
            "",
            "end_turn",
            True,
        ),
        (Dialect.OPENAI, SseEvent("[DONE]"), "", None, True),
    ],
)
def test_read_delta_finds_the_answer_text_and_whether_it_is_still_plain(
    dialect: Dialect, event: SseEvent, text: str, finish: str | None, plain: bool
) -> None:
    delta = read_delta(dialect, event)
    assert (delta.text, delta.finish, delta.plain) == (text, finish, plain)


def test_an_anthropic_prefill_leaves_out_trailing_white_space_and_says_what_will_repeat() -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": 5})
    new_body, overlap = prefill_request(Dialect.ANTHROPIC, body, "Once upon a ")
    messages = orjson.loads(new_body)["messages"]
    assert messages[-1] == {"role": "assistant", "content": "Once upon a"}
    assert overlap == " "


def test_an_openai_prefill_keeps_the_text_as_sent() -> None:
    body = orjson.dumps({"model": "m", "messages": []})
    new_body, overlap = prefill_request(Dialect.OPENAI, body, "Once ")
    assert orjson.loads(new_body)["messages"] == [{"role": "assistant", "content": "Once "}]
    assert overlap == ""


def test_the_gate_holds_text_back_until_it_passes_what_was_sent() -> None:
    gate = PrefixGate("Hello wor")
    assert gate.feed("Hel") == ""
    assert gate.feed("lo w") == ""
    assert gate.feed("orld!") == "ld!"
    assert gate.feed(" More") == " More"


def test_the_gate_refuses_an_answer_that_diverges() -> None:
    gate = PrefixGate("Hello world")
    assert gate.feed("Hello") == ""
    assert gate.feed(" there") is None


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40), st.data())
def test_the_gate_passes_exactly_the_new_text_whatever_the_chunking(
    sent: str, rest: str, data: st.DataObject
) -> None:
    full = sent + rest
    cuts = sorted(data.draw(st.lists(st.integers(0, len(full)), max_size=6)))
    pieces = [full[a:b] for a, b in zip([0, *cuts], [*cuts, len(full)], strict=True)]
    gate = PrefixGate(sent)
    out = [gate.feed(piece) for piece in pieces]
    assert None not in out
    assert "".join(piece for piece in out if piece) == rest


@pytest.mark.parametrize("client", [Dialect.OPENAI, Dialect.ANTHROPIC])
def test_continuation_frames_are_valid_sse_in_the_clients_dialect(client: Dialect) -> None:
    frames = ContinuationFrames(client, model="m", block_index=0, created=1)
    stream = frames.text("more") + b"".join(frames.finish(Dialect.ANTHROPIC, "end_turn"))
    events = SseDecoder().feed(stream)
    if client is Dialect.OPENAI:
        assert orjson.loads(events[0].data)["choices"][0]["delta"] == {"content": "more"}
        assert orjson.loads(events[1].data)["choices"][0]["finish_reason"] == "stop"
        assert events[-1].data == "[DONE]"
    else:
        assert [event.event for event in events] == [
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert orjson.loads(events[2].data)["delta"]["stop_reason"] == "end_turn"


def test_a_prefill_for_a_body_nested_deeper_than_orjson_writes_asks_from_scratch_instead() -> None:
    """The upstream body may be the client's own bytes, deeper than orjson writes: the provider is
    asked the original request, and its answer must repeat everything already sent."""
    body = b'{"model":"m","messages":[],"metadata":' + b"[" * 300 + b"]" * 300 + b"}"

    assert prefill_request(Dialect.ANTHROPIC, body, "Once upon a ") == (body, "Once upon a ")


def test_a_text_delta_nested_past_pythons_recursion_limit_is_no_text() -> None:
    deep = "[" * 1000 + "]" * 1000
    event = SseEvent(
        f'{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{deep}}}}}'
    )

    assert read_delta(Dialect.ANTHROPIC, event).text == ""
