"""What an upstream answer says about itself: the model that answered, token usage, finish reasons.

Pure functions over one provider's wire format, fed only what the attempt hands telemetry: a whole
non-streaming body, or the few stream events that can carry these facts (OpenAI's finish and usage
chunks; Anthropic's `message_start` and `message_delta`). Input tokens follow the GenAI conventions:
for Anthropic they include the prompt-cache reads and writes, which the API counts separately.
Anything unreadable is ignored — telemetry never breaks an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.sse import SseEvent

_ANTHROPIC_INPUT_PARTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(slots=True)
class AnswerFacts:
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reasons: list[str] = field(default_factory=list)
    output: Any = None  # the answer's messages, kept only when content capture is on


def read_answer(
    dialect: Dialect, payload: dict[str, Any], facts: AnswerFacts, *, keep_output: bool = False
) -> None:
    _model(payload, facts)
    if dialect is Dialect.ANTHROPIC:
        _anthropic_usage(payload.get("usage"), facts)
        _finish(payload.get("stop_reason"), facts)
        if keep_output:
            facts.output = [{"role": payload.get("role", "assistant"), "content": payload.get("content")}]
        return
    _openai_usage(payload.get("usage"), facts)
    choices = payload.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                _finish(choice.get("finish_reason"), facts)
        if keep_output:
            facts.output = [choice.get("message") for choice in choices if isinstance(choice, dict)]


def read_event(dialect: Dialect, event: SseEvent, facts: AnswerFacts) -> None:
    payload = _loads(event.data)
    if not isinstance(payload, dict):
        return
    if dialect is Dialect.ANTHROPIC:
        kind = payload.get("type", event.event)
        if kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                _model(message, facts)
                _anthropic_usage(message.get("usage"), facts)
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                _finish(delta.get("stop_reason"), facts)
            _anthropic_usage(payload.get("usage"), facts)
        return
    _model(payload, facts)
    _openai_usage(payload.get("usage"), facts)
    choices = payload.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                _finish(choice.get("finish_reason"), facts)


def _openai_usage(usage: object, facts: AnswerFacts) -> None:
    if not isinstance(usage, dict):
        return
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int):
        facts.input_tokens = prompt
    if isinstance(completion, int):
        facts.output_tokens = completion


def _anthropic_usage(usage: object, facts: AnswerFacts) -> None:
    """message_delta's counts are cumulative, so a later value replaces an earlier one."""
    if not isinstance(usage, dict):
        return
    parts = [usage.get(name) for name in _ANTHROPIC_INPUT_PARTS]
    if isinstance(parts[0], int):
        facts.input_tokens = sum(part for part in parts if isinstance(part, int))
    output = usage.get("output_tokens")
    if isinstance(output, int):
        facts.output_tokens = output


def _model(payload: dict[str, Any], facts: AnswerFacts) -> None:
    model = payload.get("model")
    if isinstance(model, str) and model:
        facts.model = model


def _finish(reason: object, facts: AnswerFacts) -> None:
    if isinstance(reason, str) and reason:  # one per generation, repeats included
        facts.finish_reasons.append(reason)


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
