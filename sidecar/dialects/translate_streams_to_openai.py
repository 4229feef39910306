"""Anthropic Messages stream → OpenAI chat.completion.chunk frames (rules: `translate_streams`)."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.dialects.sse import SseEvent
from sidecar.dialects.translate_responses import (
    FINISH_REASONS,
    openai_error_object,
    openai_response_id,
    openai_usage,
)
from sidecar.errors import TranslationError

__all__ = ["DONE_FRAME", "AnthropicToOpenAIStream", "load_event"]

DONE_FRAME = b"data: [DONE]\n\n"
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def load_event(event: SseEvent) -> dict[str, Any]:
    """The event's JSON object, or `TranslationError`."""
    try:
        payload = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"stream event is not JSON: {event.data[:80]!r}") from exc
    if not isinstance(payload, dict):
        raise TranslationError(f"stream event is not a JSON object: {event.data[:80]!r}")
    return payload


class AnthropicToOpenAIStream:
    """Anthropic Messages stream events → OpenAI chat.completion.chunk frames."""

    __slots__ = (
        "_created",
        "_errored",
        "_finish_reason",
        "_finished",
        "_id",
        "_include_usage",
        "_model",
        "_tool_blocks",
        "_usage",
        "_usage_sent",
    )

    def __init__(self, *, created: int, include_usage: bool) -> None:
        self._created = created
        self._include_usage = include_usage
        self._id = "chatcmpl-detour"
        self._model = ""
        self._tool_blocks: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._usage: dict[str, int] = {}
        self._finish_reason: str | None = None
        self._usage_sent = False
        self._errored = False
        self._finished = False

    @property
    def completed(self) -> bool:
        """True once the upstream said why the answer ended (message_delta with a stop_reason)."""
        return self._finish_reason is not None

    def feed(self, event: SseEvent) -> list[bytes]:
        if self._finished:
            return []
        payload = load_event(event)
        kind = payload.get("type") or event.event
        try:
            if kind == "content_block_delta":
                return self._block_delta(payload)
            if kind == "content_block_start":
                return self._block_start(payload)
            if kind == "message_start":
                return self._message_start(payload["message"])
            if kind == "message_delta":
                return self._message_delta(payload)
            if kind == "message_stop":
                return self._usage_frames()
            if kind == "error":
                return self._error(payload.get("error"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise TranslationError(f"malformed Anthropic {kind} event: {exc!r}") from exc
        return []  # ping, content_block_stop and anything newer carry nothing for OpenAI

    def finish(self) -> list[bytes]:
        if self._finished:
            return []
        frames = [] if self._errored else self._usage_frames()
        self._finished = True
        frames.append(DONE_FRAME)
        return frames

    def _message_start(self, message: dict[str, Any]) -> list[bytes]:
        self._id = openai_response_id(message["id"])
        self._model = message.get("model") or self._model
        self._merge_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def _block_start(self, payload: dict[str, Any]) -> list[bytes]:
        block = payload["content_block"]
        kind = block["type"]
        if kind == "text":
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if kind != "tool_use":
            return []
        tool_index = len(self._tool_blocks)
        self._tool_blocks[payload["index"]] = tool_index
        function = {"name": block["name"], "arguments": ""}
        call = {"index": tool_index, "id": block["id"], "type": "function", "function": function}
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, payload: dict[str, Any]) -> list[bytes]:
        delta = payload["delta"]
        kind = delta["type"]
        if kind == "text_delta":
            return [self._chunk({"content": delta["text"]})] if delta["text"] else []
        if kind == "input_json_delta":
            tool_index = self._tool_blocks.get(payload["index"])
            if tool_index is None or not delta["partial_json"]:
                return []
            call = {"index": tool_index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking_delta, signature_delta, citations_delta

    def _message_delta(self, payload: dict[str, Any]) -> list[bytes]:
        self._merge_usage(payload.get("usage"))
        stop_reason = (payload.get("delta") or {}).get("stop_reason")
        if stop_reason is None or self._finish_reason is not None:
            return []
        self._finish_reason = FINISH_REASONS.get(stop_reason, "stop")
        return [self._chunk({}, self._finish_reason)]

    def _merge_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            for field in _USAGE_FIELDS:
                value = usage.get(field)
                if value is not None:
                    self._usage[field] = value

    def _usage_frames(self) -> list[bytes]:
        if not self._include_usage or self._usage_sent or self._finish_reason is None:
            return []
        self._usage_sent = True
        chunk = self._envelope([])
        chunk["usage"] = openai_usage(self._usage)
        return [b"data: " + orjson.dumps(chunk) + b"\n\n"]

    def _error(self, error: Any) -> list[bytes]:
        self._errored = True
        error = error if isinstance(error, dict) else {}
        message = error.get("message") or "the upstream provider reported an error mid-stream"
        body = {"error": openai_error_object(str(error.get("type") or "api_error"), str(message))}
        return [b"data: " + orjson.dumps(body) + b"\n\n"]

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = self._envelope(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _envelope(self, choices: list[Any]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk
