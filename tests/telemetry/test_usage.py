"""Model, token usage and finish reasons read from the providers' own answers (bodies and events)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.dialects import Dialect
from sidecar.dialects.sse import SseEvent
from sidecar.telemetry.usage import AnswerFacts, read_answer, read_event


def _facts(dialect: Dialect, *payloads: Any, events: bool = False) -> AnswerFacts:
    facts = AnswerFacts()
    for payload in payloads:
        if events:
            name, data = payload
            read_event(
                dialect, SseEvent(data if isinstance(data, str) else orjson.dumps(data).decode(), name), facts
            )
        else:
            read_answer(dialect, payload, facts)
    return facts


@pytest.mark.parametrize(
    ("dialect", "body", "expected"),
    [
        (
            Dialect.OPENAI,
            {
                "model": "gpt-4o-2024-08-06",
                "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
            },
            ("gpt-4o-2024-08-06", 10, 3, ["stop", "length"]),
        ),
        (
            Dialect.ANTHROPIC,
            {
                "model": "claude-sonnet-4-5",
                "stop_reason": "max_tokens",
                "usage": {
                    "input_tokens": 5,
                    "cache_creation_input_tokens": 100,
                    "cache_read_input_tokens": 20,
                    "output_tokens": 9,
                },
            },
            ("claude-sonnet-4-5", 125, 9, ["max_tokens"]),
        ),
        (Dialect.OPENAI, {"model": "m", "choices": [], "usage": None}, ("m", None, None, [])),
        (Dialect.OPENAI, {"choices": "not a list", "usage": []}, (None, None, None, [])),
        (Dialect.ANTHROPIC, {"content": [], "usage": "none", "stop_reason": 3}, (None, None, None, [])),
        (Dialect.OPENAI, {"usage": {"prompt_tokens": "many"}}, (None, None, None, [])),
    ],
)
def test_a_whole_body_gives_model_usage_and_finish_reasons(
    dialect: Dialect, body: Any, expected: tuple[Any, ...]
) -> None:
    facts = _facts(dialect, body)
    assert (facts.model, facts.input_tokens, facts.output_tokens, facts.finish_reasons) == expected


def test_an_openai_stream_gives_the_finish_chunk_and_the_usage_chunk() -> None:
    facts = _facts(
        Dialect.OPENAI,
        (None, {"model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        (None, {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 2}}),
        events=True,
    )
    assert (facts.model, facts.input_tokens, facts.output_tokens, facts.finish_reasons) == (
        "gpt-4o",
        40,
        2,
        ["tool_calls"],
    )


def test_an_anthropic_stream_gives_input_from_message_start_and_output_from_message_delta() -> None:
    start = {
        "type": "message_start",
        "message": {"model": "claude-haiku-4-5", "usage": {"input_tokens": 30, "output_tokens": 1}},
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}
    facts = _facts(Dialect.ANTHROPIC, ("message_start", start), ("message_delta", delta), events=True)
    assert (facts.model, facts.input_tokens, facts.output_tokens, facts.finish_reasons) == (
        "claude-haiku-4-5",
        30,
        15,
        ["end_turn"],
    )


def test_unreadable_events_are_ignored() -> None:
    facts = _facts(
        Dialect.ANTHROPIC, ("message_delta", "{broken"), ("message_start", '"a string"'), events=True
    )
    assert facts == AnswerFacts()


def test_the_answer_is_kept_only_when_asked() -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": "Hi"}}]}
    kept, dropped = AnswerFacts(), AnswerFacts()
    read_answer(Dialect.OPENAI, body, kept, keep_output=True)
    read_answer(Dialect.OPENAI, body, dropped)
    assert kept.output == [{"role": "assistant", "content": "Hi"}]
    assert dropped.output is None
