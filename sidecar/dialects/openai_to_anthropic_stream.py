"""An OpenAI chat.completion.chunk stream → Anthropic Messages stream events: how an Anthropic client
streams an answer from an OpenAI provider, as a sans-IO state machine (one upstream `SseEvent` in,
client frames out; the contract is `exchange_plan.StreamConverter`).

It runs for every streamed token, so `feed` does O(1) work per event: it never rescans what was
already sent, and each returned item is one complete frame ready to write. `finish` is called once
the upstream stream has ended (after `data: [DONE]`, or when it was cut), is idempotent and never
raises. It never invents a finish reason: a stream cut before a finish_reason ends with a
message_delta whose stop_reason is null, and the router reports the failure in-band.

A chunk is read whole before anything is sent or remembered: one whose shape is not a chunk's (no
object, `choices` or a delta or tool call of another type, text that is not a string) raises
`TranslationError` and changes nothing — the caller drops it, counts it and keeps feeding, and the
next readable chunk still begins the message with message_start. Values that only describe the
answer (usage, finish_reason, model, id) are ignored when unreadable, as if absent
(`answer_metadata`).

| OpenAI chunk                            | Anthropic event(s)                                           |
|-----------------------------------------|--------------------------------------------------------------|
| first readable chunk                    | message_start (id `msg_<chunk id>`, model of the chunk, else |
|                                         | the requested model; usage 0 until the end)                  |
| delta.content / delta.refusal           | content_block_start text (when no text block is open),       |
|                                         | text_delta                                                   |
| tool_calls delta with a new index       | content_block_stop of an open text block, content_block_start|
|                                         | tool_use (id made Anthropic-safe), input_json_delta fragments|
|                                         | — or held while another tool call's block is open (below)    |
| finish_reason                           | content_block_stop of the open block, then the held blocks   |
|                                         | (reason remembered)                                          |
| usage (the include_usage chunk)         | remembered                                                   |
| `data: [DONE]` or finish()              | the open and held blocks as at a finish_reason; message_delta|
|                                         | (stop_reason from `answer_metadata`, usage with input/output/|
|                                         | cache counts, 0 when unknown), message_stop                  |
| `{"error": {...}}`                      | event `error`; finish() then sends nothing more              |

Tool-call deltas without an `index` (some OpenAI-compatible servers) are keyed by their id, and
fragments with neither belong to the latest tool call.

**One tool call's block stays open until the answer ends.** Anthropic streams one content block at
a time and sends deltas only for the open one; OpenAI may interleave fragments of several tool calls,
or send text after a call has started, and nothing says when a call is complete but the
finish_reason. A tool_use block closed early could not take a late fragment of its arguments: sent
anyway, it breaks the one-open-block contract (the SDK would append it by index, but whoever acted
on content_block_stop already ran the tool with a cut input); dropped, the client's input would be
wrong. So while a tool call's block is open, what needs another block — text, another tool call —
is held, and each held block is sent whole (start, one delta with everything it gathered, stop), in
the order it began, once the open block closes at the finish. The usual stream — text, then a tool
call — still streams live throughout; of several calls the first streams live and the others arrive
whole at the end (OpenAI's own are short and follow one another closely). A fragment for a call
whose block already closed (only possible after a finish_reason) is dropped.
"""

from __future__ import annotations

from typing import Any

from sidecar.dialects.answer_metadata import anthropic_response_id, anthropic_stop_reason, anthropic_usage
from sidecar.dialects.content import anthropic_tool_id
from sidecar.dialects.frames import MESSAGE_STOP_FRAME, anthropic_frame, load_event
from sidecar.dialects.sse import SseEvent
from sidecar.dialects.upstream_errors import anthropic_error_type_from_openai
from sidecar.errors import TranslationError

# One tool-call fragment as read: (index, id, function name, argument fragment).
_Call = tuple[int | str | None, str | None, str | None, str]
# The main choice as read: (text, refusal, tool-call fragments, finish_reason).
_Choice = tuple[str, str, list[_Call], str | None]

_NOTHING: dict[str, Any] = {}  # read-only stand-in for an absent object
_NO_LIST: list[Any] = []  # read-only stand-in for an absent list


class _Held:
    """A block that could not start while a tool call's block was open; `key` None: text."""

    __slots__ = ("block", "key", "parts")

    def __init__(self, key: int | str | None, block: dict[str, Any], part: str) -> None:
        self.key = key
        self.block = block
        self.parts = [part] if part else []


class OpenAIToAnthropicStream:
    """OpenAI chat.completion.chunk events → Anthropic Messages stream events."""

    __slots__ = (
        "_errored",
        "_finish_reason",
        "_finished",
        "_held",
        "_last_tool_key",
        "_model",
        "_next_block",
        "_open_block",
        "_open_tool",
        "_refused",
        "_started",
        "_tools",
        "_usage",
    )

    def __init__(self, *, requested_model: str) -> None:
        self._model = requested_model
        self._started = False
        self._next_block = 0
        self._open_block: int | None = None
        self._open_tool: int | str | None = None  # the key of the tool call whose block is open
        # Every tool call by its key: None once it has a block of its own, else where it is held.
        self._tools: dict[int | str, _Held | None] = {}
        self._held: list[_Held] = []
        self._last_tool_key: int | str = 0
        self._finish_reason: str | None = None
        self._refused = False
        self._usage: dict[str, Any] | None = None
        self._errored = False
        self._finished = False

    @property
    def completed(self) -> bool:
        """True once the upstream sent a (readable) finish_reason."""
        return self._finish_reason is not None

    def feed(self, event: SseEvent) -> list[bytes]:
        if self._finished:
            return []
        if event.data.strip() == "[DONE]":
            return self.finish()
        payload = load_event(event)
        if payload.get("error"):
            return self._error(payload["error"])
        choices = payload.get("choices") or _NO_LIST
        if not isinstance(choices, list):
            raise TranslationError("malformed OpenAI chunk: 'choices' is not a list")
        readings = [_read_choice(choice) for choice in choices]  # raises before anything changes
        frames: list[bytes] = []
        if not self._started:
            frames.append(self._message_start(payload))
        for reading in readings:
            if reading is not None:
                self._choice(reading, frames)
        usage = payload.get("usage")
        if isinstance(usage, dict) and usage:
            self._usage = usage
        return frames

    def finish(self) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        if not self._started or self._errored:
            return []
        frames: list[bytes] = []
        self._end_blocks(frames)
        stop_reason = None
        if self._finish_reason is not None:
            stop_reason = anthropic_stop_reason(
                self._finish_reason, has_tool_calls=bool(self._tools), refused=self._refused
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
        model, chunk_id = chunk.get("model"), chunk.get("id")
        if isinstance(model, str) and model:
            self._model = model
        message: dict[str, Any] = {
            "id": anthropic_response_id(chunk_id if isinstance(chunk_id, str) and chunk_id else "detour"),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return anthropic_frame(b"message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: _Choice, frames: list[bytes]) -> None:
        text, refusal, calls, finish_reason = choice
        if text:
            self._text(text, frames)
        if refusal:
            self._refused = True
            self._text(refusal, frames)
        for call in calls:
            self._tool_call(call, frames)
        if finish_reason is not None:
            self._finish_reason = finish_reason
            self._end_blocks(frames)

    def _text(self, text: str, frames: list[bytes]) -> None:
        if self._open_tool is not None:  # a tool call's block is open: the text waits for the end
            last = self._held[-1] if self._held else None
            if last is not None and last.key is None:
                last.parts.append(text)
            else:
                self._held.append(_Held(None, {"type": "text", "text": ""}, text))
            return
        if self._open_block is None:
            self._open(frames, {"type": "text", "text": ""})
        frames.append(self._delta({"type": "text_delta", "text": text}))

    def _tool_call(self, call: _Call, frames: list[bytes]) -> None:
        index, call_id, name, arguments = call
        key = index if index is not None else (call_id or self._last_tool_key)
        self._last_tool_key = key
        if key == self._open_tool:
            if arguments:
                frames.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            return
        if key not in self._tools:
            tool_id = anthropic_tool_id(call_id or f"toolu_detour_{len(self._tools)}")
            content_block = {"type": "tool_use", "id": tool_id, "name": name or "", "input": {}}
            if self._open_tool is None:
                self._tools[key] = None
                self._open(frames, content_block)
                self._open_tool = key
                if arguments:
                    frames.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            else:
                held = self._tools[key] = _Held(key, content_block, arguments)
                self._held.append(held)
            return
        held_call = self._tools[key]
        if held_call is not None and arguments:
            held_call.parts.append(arguments)
        # else its block closed at a finish_reason: a later fragment cannot join it, and is dropped

    def _end_blocks(self, frames: list[bytes]) -> None:
        """Close the open block, then send every held block whole, in the order they began."""
        self._close_block(frames)
        for held in self._held:
            self._open(frames, held.block)
            if held.parts:
                joined = "".join(held.parts)
                if held.key is None:
                    frames.append(self._delta({"type": "text_delta", "text": joined}))
                else:
                    frames.append(self._delta({"type": "input_json_delta", "partial_json": joined}))
            self._close_block(frames)
            if held.key is not None:
                self._tools[held.key] = None
        self._held.clear()

    def _delta(self, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": self._open_block, "delta": delta}
        return anthropic_frame(b"content_block_delta", payload)

    def _open(self, frames: list[bytes], content_block: dict[str, Any]) -> None:
        self._close_block(frames)
        index = self._next_block
        self._next_block += 1
        self._open_block = index
        payload = {"type": "content_block_start", "index": index, "content_block": content_block}
        frames.append(anthropic_frame(b"content_block_start", payload))

    def _close_block(self, frames: list[bytes]) -> None:
        if self._open_block is not None:
            payload = {"type": "content_block_stop", "index": self._open_block}
            frames.append(anthropic_frame(b"content_block_stop", payload))
            self._open_block = None
            self._open_tool = None

    def _error(self, error: Any) -> list[bytes]:
        self._errored = True
        if isinstance(error, dict):
            error_type, message = anthropic_error_type_from_openai(error), error.get("message")
        else:
            error_type, message = "api_error", error
        if not isinstance(message, str) or not message:  # not str(): it may be nested too deeply to print
            message = "the upstream provider reported an error mid-stream"
        return [
            anthropic_frame(b"error", {"type": "error", "error": {"type": error_type, "message": message}})
        ]


def _read_choice(choice: Any) -> _Choice | None:
    """The answer's choice as validated values; None for another choice (`n` > 1 is refused before
    a request is sent, so only choice 0 is the answer)."""
    if not isinstance(choice, dict):
        raise TranslationError("malformed OpenAI chunk: a choice is not an object")
    if choice.get("index", 0) != 0:
        return None
    delta = choice.get("delta") or _NOTHING
    if not isinstance(delta, dict):
        raise TranslationError("malformed OpenAI chunk: a delta is not an object")
    text, refusal = delta.get("content") or "", delta.get("refusal") or ""
    if not isinstance(text, str) or not isinstance(refusal, str):
        raise TranslationError("malformed OpenAI chunk: content or refusal is not a string")
    calls = delta.get("tool_calls")
    reason = choice.get("finish_reason")
    return (
        text,
        refusal,
        _read_calls(calls) if calls else _NO_LIST,
        reason if isinstance(reason, str) and reason else None,
    )


def _read_calls(calls: Any) -> list[_Call]:
    if not isinstance(calls, list):
        raise TranslationError("malformed OpenAI chunk: tool_calls is not a list")
    read: list[_Call] = []
    for call in calls:
        if not isinstance(call, dict):
            raise TranslationError("malformed OpenAI chunk: a tool call is not an object")
        function = call.get("function") or _NOTHING
        if not isinstance(function, dict):
            raise TranslationError("malformed OpenAI chunk: a tool call's function is not an object")
        index, call_id = call.get("index"), call.get("id") or None
        name, arguments = function.get("name") or None, function.get("arguments") or ""
        if (
            not isinstance(index, int | str | None)
            or not isinstance(call_id, str | None)
            or not isinstance(name, str | None)
            or not isinstance(arguments, str)
        ):
            raise TranslationError("malformed OpenAI chunk: a tool call's index, id, name or arguments")
        read.append((index, call_id, name, arguments))
    return read
