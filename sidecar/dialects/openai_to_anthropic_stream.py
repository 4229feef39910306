"""An OpenAI chat.completion.chunk stream → Anthropic Messages stream events: how an Anthropic client
streams an answer from an OpenAI provider, as a sans-IO state machine (one upstream `SseEvent` in,
client frames out; the contract is `exchange_plan.StreamConverter`).

It runs for every streamed token, so `feed` does O(1) work per event: it never rescans what was
already sent, and each returned item is one complete frame ready to write. `finish` is called once
the upstream stream has ended (after `data: [DONE]`, or when it was cut) and is idempotent. It never
invents a finish reason: a stream cut before a finish_reason ends with a message_delta whose
stop_reason is null, and the router reports the failure in-band. An event whose data is not the JSON
expected raises `TranslationError`; the caller drops it, counts it and keeps feeding.

| OpenAI chunk                            | Anthropic event(s)                                           |
|-----------------------------------------|--------------------------------------------------------------|
| first chunk                             | message_start (id `msg_<chunk id>`, model of the chunk, else |
|                                         | the requested model; usage 0 until the end)                  |
| delta.content / delta.refusal           | content_block_start text (when no text block is open),       |
|                                         | text_delta                                                   |
| tool_calls delta with a new index       | content_block_stop of the open block, content_block_start    |
|                                         | tool_use (id made Anthropic-safe), input_json_delta fragments|
| finish_reason                           | content_block_stop of the open block (reason remembered)     |
| usage (the include_usage chunk)         | remembered                                                   |
| `data: [DONE]` or finish()              | message_delta (stop_reason from `answer_metadata`, usage     |
|                                         | with input/output/cache counts, 0 when unknown), message_stop|
| `{"error": {...}}`                      | event `error`; finish() then sends nothing more              |

Tool-call deltas without an `index` (some OpenAI-compatible servers) are keyed by their id, and
fragments with neither belong to the latest tool call.
"""

from __future__ import annotations

from typing import Any

from sidecar.dialects.answer_metadata import anthropic_response_id, anthropic_stop_reason, anthropic_usage
from sidecar.dialects.content import anthropic_tool_id
from sidecar.dialects.frames import MESSAGE_STOP_FRAME, anthropic_frame, load_event
from sidecar.dialects.sse import SseEvent
from sidecar.dialects.upstream_errors import anthropic_error_type_from_openai
from sidecar.errors import TranslationError


class OpenAIToAnthropicStream:
    """OpenAI chat.completion.chunk events → Anthropic Messages stream events."""

    __slots__ = (
        "_errored",
        "_finish_reason",
        "_finished",
        "_last_tool_key",
        "_model",
        "_next_block",
        "_open_block",
        "_open_is_text",
        "_refused",
        "_started",
        "_tool_blocks",
        "_usage",
    )

    def __init__(self, *, requested_model: str) -> None:
        self._model = requested_model
        self._started = False
        self._next_block = 0
        self._open_block: int | None = None
        self._open_is_text = False
        self._tool_blocks: dict[int | str, int] = {}  # OpenAI tool_calls index → Anthropic block index
        self._last_tool_key: int | str = 0
        self._finish_reason: str | None = None
        self._refused = False
        self._usage: dict[str, Any] | None = None
        self._errored = False
        self._finished = False

    @property
    def completed(self) -> bool:
        """True once the upstream sent a finish_reason."""
        return self._finish_reason is not None

    def feed(self, event: SseEvent) -> list[bytes]:
        if self._finished:
            return []
        if event.data.strip() == "[DONE]":
            return self.finish()
        payload = load_event(event)
        if payload.get("error"):
            return self._error(payload["error"])
        frames: list[bytes] = []
        try:
            if not self._started:
                frames.append(self._message_start(payload))
            for choice in payload.get("choices") or ():
                if choice.get("index", 0) == 0:
                    self._choice(choice, frames)
        except (KeyError, TypeError, AttributeError) as exc:
            raise TranslationError(f"malformed OpenAI chunk: {exc!r}") from exc
        if payload.get("usage"):
            self._usage = payload["usage"]
        return frames

    def finish(self) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        if not self._started or self._errored:
            return []
        frames: list[bytes] = []
        self._close_block(frames)
        stop_reason = None
        if self._finish_reason is not None:
            stop_reason = anthropic_stop_reason(
                self._finish_reason, has_tool_calls=bool(self._tool_blocks), refused=self._refused
            )
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        usage = anthropic_usage(self._usage)
        frames.append(
            anthropic_frame(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        frames.append(MESSAGE_STOP_FRAME)
        return frames

    def _message_start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        self._model = chunk.get("model") or self._model
        message: dict[str, Any] = {
            "id": anthropic_response_id(str(chunk.get("id") or "detour")),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return anthropic_frame(b"message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any], frames: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self._text(delta["content"], frames)
        if delta.get("refusal"):
            self._refused = True
            self._text(delta["refusal"], frames)
        for call in delta.get("tool_calls") or ():
            self._tool_call(call, frames)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]
            self._close_block(frames)

    def _text(self, text: str, frames: list[bytes]) -> None:
        if self._open_block is None or not self._open_is_text:
            self._open(frames, {"type": "text", "text": ""}, is_text=True)
        delta = {"type": "text_delta", "text": text}
        payload = {"type": "content_block_delta", "index": self._open_block, "delta": delta}
        frames.append(anthropic_frame(b"content_block_delta", payload))

    def _tool_call(self, call: dict[str, Any], frames: list[bytes]) -> None:
        key = call.get("index")
        if key is None:
            key = call.get("id") or self._last_tool_key
        self._last_tool_key = key
        function = call.get("function") or {}
        block = self._tool_blocks.get(key)
        if block is None:
            tool_id = anthropic_tool_id(call.get("id") or f"toolu_detour_{self._next_block}")
            content_block: dict[str, Any] = {
                "type": "tool_use",
                "id": tool_id,
                "name": function.get("name") or "",
                "input": {},
            }
            block = self._open(frames, content_block, is_text=False)
            self._tool_blocks[key] = block
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            frames.append(
                anthropic_frame(
                    b"content_block_delta", {"type": "content_block_delta", "index": block, "delta": delta}
                )
            )

    def _open(self, frames: list[bytes], content_block: dict[str, Any], *, is_text: bool) -> int:
        self._close_block(frames)
        index = self._next_block
        self._next_block += 1
        self._open_block, self._open_is_text = index, is_text
        payload = {"type": "content_block_start", "index": index, "content_block": content_block}
        frames.append(anthropic_frame(b"content_block_start", payload))
        return index

    def _close_block(self, frames: list[bytes]) -> None:
        if self._open_block is not None:
            payload = {"type": "content_block_stop", "index": self._open_block}
            frames.append(anthropic_frame(b"content_block_stop", payload))
            self._open_block = None

    def _error(self, error: Any) -> list[bytes]:
        self._errored = True
        if isinstance(error, dict):
            error_type, message = anthropic_error_type_from_openai(error), error.get("message")
        else:
            error_type, message = "api_error", error
        message = str(message or "the upstream provider reported an error mid-stream")
        return [
            anthropic_frame(b"error", {"type": "error", "error": {"type": error_type, "message": message}})
        ]
