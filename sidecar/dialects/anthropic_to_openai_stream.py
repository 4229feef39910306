"""An Anthropic Messages stream → OpenAI chat.completion.chunk frames: how an OpenAI client streams
an answer from an Anthropic provider, as a sans-IO state machine (one upstream `SseEvent` in, client
frames out; the contract is `exchange_plan.StreamConverter`).

It runs for every streamed token, so `feed` does O(1) work per event: it never rescans what was
already sent, and each returned item is one complete frame ready to write. `finish` is called once
the upstream stream has ended (after `message_stop`, or when it was cut), is idempotent and never
raises. It never invents a finish reason: a stream cut before message_delta gets no finish chunk,
and the router reports the failure in-band.

An event whose data is not the JSON expected (a missing field, text that is not a string, an id or
tool name that is not one) raises `TranslationError` before it changes anything; the caller drops
it, counts it and keeps feeding. Values that only describe the answer (usage counts, stop_reason,
model) are ignored when unreadable, as if absent (`answer_metadata`), so a count that is not a
number, or counts whose sum would pass 64 bits, never break the usage chunk at the end.

| Anthropic event                         | OpenAI chunk(s)                                              |
|-----------------------------------------|--------------------------------------------------------------|
| message_start                           | role chunk `{"role":"assistant","content":"","refusal":null}`|
|                                         | (id `chatcmpl-<message id>`, model of the message)           |
| content_block_start text / text_delta   | content delta (an empty text start sends nothing)            |
| content_block_start tool_use            | tool_calls delta: index (tool blocks counted from 0), id,    |
|                                         | type, function name, arguments ""                            |
| input_json_delta                        | tool_calls delta with the argument fragment                  |
| message_delta                           | empty delta with finish_reason (`answer_metadata`)           |
| message_stop                            | usage chunk (`choices: []`) when include_usage               |
| error                                   | in-band `data: {"error": {...}}`, the OpenAI SDKs raise on it|
| ping, thinking / citations / signature  | nothing                                                      |
| finish()                                | pending usage chunk if the message completed, `data: [DONE]` |

With include_usage every chunk carries `"usage": null`, as OpenAI's own do. Usage is the Anthropic
usage of message_start updated by message_delta (its counts are cumulative).
"""

from __future__ import annotations

from typing import Any

from sidecar.dialects.answer_metadata import (
    openai_finish_reason,
    openai_response_id,
    openai_usage,
    token_count,
)
from sidecar.dialects.frames import DONE_FRAME, load_event, openai_frame
from sidecar.dialects.sse import SseEvent
from sidecar.dialects.upstream_errors import openai_error_object
from sidecar.errors import TranslationError

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


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
        self._usage: dict[str, int] = {}  # only readable counts (`token_count`)
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
            # Each handler reads what it needs before it changes anything, so dropping is safe.
            name = kind if isinstance(kind, str) else "unnamed"  # not str(): it may be nested deeply
            raise TranslationError(f"malformed Anthropic {name} event: {exc!r}") from exc
        return []  # ping, content_block_stop and anything newer carry nothing for OpenAI

    def finish(self) -> list[bytes]:
        if self._finished:
            return []
        frames = [] if self._errored else self._usage_frames()
        self._finished = True
        frames.append(DONE_FRAME)
        return frames

    def _message_start(self, message: dict[str, Any]) -> list[bytes]:
        message_id, model = message["id"], message.get("model")
        if not isinstance(message_id, str):
            raise TranslationError("malformed Anthropic message_start event: its id is not a string")
        self._id = openai_response_id(message_id)
        if isinstance(model, str) and model:
            self._model = model
        self._merge_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def _block_start(self, payload: dict[str, Any]) -> list[bytes]:
        block = payload["content_block"]
        kind = block["type"]
        if kind == "text":
            text = block.get("text")
            if text is not None and not isinstance(text, str):
                raise TranslationError("malformed Anthropic content_block_start event: its text")
            return [self._chunk({"content": text})] if text else []
        if kind != "tool_use":
            return []
        index, tool_id, name = payload["index"], block["id"], block["name"]
        if not isinstance(index, int) or not isinstance(tool_id, str) or not isinstance(name, str):
            raise TranslationError("malformed Anthropic content_block_start event: its index, id or name")
        tool_index = len(self._tool_blocks)
        function = {"name": name, "arguments": ""}
        call = {"index": tool_index, "id": tool_id, "type": "function", "function": function}
        frame = self._chunk({"tool_calls": [call]})
        self._tool_blocks[index] = tool_index
        return [frame]

    def _block_delta(self, payload: dict[str, Any]) -> list[bytes]:
        delta = payload["delta"]
        kind = delta["type"]
        if kind == "text_delta":
            text = delta["text"]
            if not isinstance(text, str):
                raise TranslationError("malformed Anthropic text_delta: its text is not a string")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            index, fragment = payload["index"], delta["partial_json"]
            if not isinstance(fragment, str):
                raise TranslationError("malformed Anthropic input_json_delta: partial_json is not a string")
            tool_index = self._tool_blocks.get(index) if isinstance(index, int) else None
            if tool_index is None or not fragment:
                return []
            call = {"index": tool_index, "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking_delta, signature_delta, citations_delta

    def _message_delta(self, payload: dict[str, Any]) -> list[bytes]:
        delta = payload.get("delta") or {}
        if not isinstance(delta, dict):
            raise TranslationError("malformed Anthropic message_delta event: its delta is not an object")
        self._merge_usage(payload.get("usage"))
        stop_reason = delta.get("stop_reason")
        if not isinstance(stop_reason, str) or self._finish_reason is not None:
            return []  # no reason yet, or an unreadable one: as if absent
        self._finish_reason = openai_finish_reason(stop_reason)
        return [self._chunk({}, self._finish_reason)]

    def _merge_usage(self, usage: Any) -> None:
        """Counts are cumulative: a later readable one replaces an earlier one; others are ignored."""
        if isinstance(usage, dict):
            for field in _USAGE_FIELDS:
                value = token_count(usage.get(field))
                if value is not None:
                    self._usage[field] = value

    def _usage_frames(self) -> list[bytes]:
        if not self._include_usage or self._usage_sent or self._finish_reason is None:
            return []
        self._usage_sent = True
        chunk = self._envelope([])
        chunk["usage"] = openai_usage(self._usage)
        return [openai_frame(chunk)]

    def _error(self, error: Any) -> list[bytes]:
        self._errored = True
        error = error if isinstance(error, dict) else {}
        # Strings only, not str(): a value nested past Python's recursion limit cannot be printed.
        error_type, message = error.get("type"), error.get("message")
        if not isinstance(error_type, str) or not error_type:
            error_type = "api_error"
        if not isinstance(message, str) or not message:
            message = "the upstream provider reported an error mid-stream"
        return [openai_frame({"error": openai_error_object(error_type, message)})]

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = self._envelope(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        return openai_frame(chunk)

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
