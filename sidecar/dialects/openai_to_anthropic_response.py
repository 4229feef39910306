"""An OpenAI chat.completion → an Anthropic Message: how an Anthropic client gets a whole (not
streamed) answer from an OpenAI provider.

| OpenAI chat.completion                   | Anthropic Message                                          |
|------------------------------------------|------------------------------------------------------------|
| choices[0] only                          | the message (an answer without choices raises)             |
| id, finish_reason, usage                 | `answer_metadata` (id `msg_…`, stop_reason, usage)         |
| model                                    | model (the upstream model that answered)                   |
| message.content                          | a text block (none when empty)                             |
| message.refusal                          | a text block, and stop_reason refusal                      |
| message.tool_calls                       | tool_use blocks after the text: ids made Anthropic-safe,   |
|                                          | arguments parsed (not a JSON object → `TranslationError`)  |
| (always)                                 | stop_sequence null (OpenAI does not say which one matched) |
"""

from __future__ import annotations

from typing import Any

from sidecar.dialects.answer_metadata import anthropic_response_id, anthropic_stop_reason, anthropic_usage
from sidecar.dialects.content import MALFORMED, anthropic_tool_use
from sidecar.errors import TranslationError


def openai_to_anthropic_response(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion → an Anthropic Message (its first choice)."""
    try:
        choices = body.get("choices") or ()
        if not choices:
            raise TranslationError("OpenAI response has no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        refusal = message.get("refusal")
        if refusal:
            content.append({"type": "text", "text": refusal})
        tool_calls = message.get("tool_calls") or ()
        for position, call in enumerate(tool_calls):
            content.append(anthropic_tool_use(call, f"choices[0].message.tool_calls[{position}]"))
        stop_reason = anthropic_stop_reason(
            choice.get("finish_reason"), has_tool_calls=bool(tool_calls), refused=bool(refusal)
        )
        return {
            "id": anthropic_response_id(body["id"]),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": anthropic_usage(body.get("usage")),
        }
    except MALFORMED as exc:
        raise TranslationError(f"malformed OpenAI response: {exc!r}") from exc
