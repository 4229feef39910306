"""An Anthropic Message → an OpenAI chat.completion: how an OpenAI client gets a whole (not
streamed) answer from an Anthropic provider.

| Anthropic Message                        | OpenAI chat.completion                                     |
|------------------------------------------|------------------------------------------------------------|
| id, stop_reason, usage                   | `answer_metadata` (id `chatcmpl-…`, finish_reason, usage)  |
| model                                    | model (the upstream model that answered)                   |
| text blocks                              | message.content (joined with ""); None with only tool calls|
| tool_use blocks                          | tool_calls (ids kept; input → arguments JSON string)       |
| thinking / server-tool blocks            | dropped                                                    |
| (always)                                 | refusal null, annotations [], logprobs null, index 0       |

`created` is the sidecar's clock (Anthropic does not send one). A body that is not a Message raises
`TranslationError`.
"""

from __future__ import annotations

from typing import Any

from sidecar.dialects.answer_metadata import openai_finish_reason, openai_response_id, openai_usage
from sidecar.dialects.content import MALFORMED, openai_tool_call
from sidecar.errors import TranslationError


def anthropic_to_openai_response(body: dict[str, Any], *, created: int) -> dict[str, Any]:
    """An Anthropic Message → an OpenAI chat.completion."""
    try:
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in body.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_use":
                tool_calls.append(openai_tool_call(block))
        content = "".join(texts) if texts or not tool_calls else None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": openai_finish_reason(body.get("stop_reason")),
        }
        return {
            "id": openai_response_id(body["id"]),
            "object": "chat.completion",
            "created": created,
            "model": body["model"],
            "choices": [choice],
            "usage": openai_usage(body.get("usage")),
        }
    except MALFORMED as exc:
        raise TranslationError(f"malformed Anthropic response: {exc!r}") from exc
