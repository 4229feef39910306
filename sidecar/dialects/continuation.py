"""Continuing a cut stream (docs/architecture.md §3, `resume_streams`), as pure pieces.

- `TextDelta` reads the answer text (and whether the answer left plain text) from a provider's
  stream events, so the router knows exactly what the client already has.
- `prefill_request` asks a provider to continue from that text (an assistant prefill).
- `PrefixGate` lets a provider that cannot prefill answer from scratch, and passes on only what goes
  beyond the text already sent — and only if its answer begins with exactly that text.
- `ContinuationFrames` writes the continuation into the client's stream, in the client's dialect,
  as more deltas of the message the client is already reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.answer_metadata import anthropic_stop_reason, openai_finish_reason
from sidecar.dialects.frames import DONE_FRAME, MESSAGE_STOP_FRAME, anthropic_frame, openai_frame
from sidecar.dialects.sse import SseEvent


@dataclass(frozen=True, slots=True)
class TextDelta:
    """What one event adds to the answer. `plain` is False once the answer is more than text
    (a tool call, a refusal): such an answer is not resumed."""

    text: str = ""
    finish: str | None = None  # the provider's own finish / stop reason
    plain: bool = True
    block_index: int | None = None  # Anthropic: the content block the text belongs to


def read_delta(dialect: Dialect, event: SseEvent) -> TextDelta:
    try:
        payload = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return TextDelta()
    if not isinstance(payload, dict):
        return TextDelta()
    if dialect is Dialect.ANTHROPIC:
        return _anthropic_delta(payload)
    return _openai_delta(payload)


def _openai_delta(payload: dict[str, Any]) -> TextDelta:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return TextDelta()
    choice = choices[0]
    raw_delta = choice.get("delta")
    delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
    plain = not (delta.get("tool_calls") or delta.get("refusal") or delta.get("function_call"))
    content = delta.get("content")
    text = content if isinstance(content, str) else ""
    finish = choice.get("finish_reason")
    return TextDelta(text, finish if isinstance(finish, str) else None, plain)


def _anthropic_delta(payload: dict[str, Any]) -> TextDelta:
    kind = payload.get("type")
    if kind == "content_block_start":
        block = payload.get("content_block")
        is_text = isinstance(block, dict) and block.get("type") == "text"
        text = block.get("text", "") if is_text and isinstance(block, dict) else ""
        return TextDelta(text if isinstance(text, str) else "", None, is_text, payload.get("index"))
    if kind == "content_block_delta":
        delta = payload.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta":
            text = delta.get("text")
            # Not str(): a list nested past Python's recursion limit cannot be printed (`json_out`).
            return TextDelta(text if isinstance(text, str) else "", None, True, payload.get("index"))
        return TextDelta(plain=False)
    if kind == "message_delta":
        delta = payload.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        return TextDelta(finish=stop if isinstance(stop, str) else None, plain=stop != "refusal")
    return TextDelta()


def prefill_request(dialect: Dialect, upstream_body: bytes, sent: str) -> tuple[bytes, str]:
    """The provider's own request plus an assistant message holding the text already sent.

    Returns (body, overlap): Anthropic rejects a prefill that ends in white space, so trailing
    white space is left out of the prefill and `overlap` is what the continuation will repeat.

    The upstream body may be the client's own bytes, nested deeper than orjson writes (`json_out`);
    then the provider is asked the original request unchanged and its answer must repeat all of
    `sent` — a continuation from scratch, which `PrefixGate` checks just the same."""
    body = orjson.loads(upstream_body)
    prefill = sent.rstrip() if dialect is Dialect.ANTHROPIC else sent
    body["messages"] = [*body.get("messages", []), {"role": "assistant", "content": prefill}]
    try:
        return orjson.dumps(body), sent[len(prefill) :]
    except orjson.JSONEncodeError:
        return upstream_body, sent


class PrefixGate:
    """Holds a from-scratch answer back until it goes beyond `sent`; then passes only the rest."""

    __slots__ = ("_buffer", "_open", "_sent")

    def __init__(self, sent: str) -> None:
        self._sent = sent
        self._buffer: list[str] = []
        self._open = False

    def feed(self, text: str) -> str | None:
        """New text for the client (possibly ""), or None when the answer diverged from `sent`."""
        if self._open:
            return text
        self._buffer.append(text)
        seen = "".join(self._buffer)
        if len(seen) <= len(self._sent):
            return "" if self._sent.startswith(seen) else None
        if not seen.startswith(self._sent):
            return None
        self._open = True
        return seen[len(self._sent) :]


class ContinuationFrames:
    """Client-dialect frames that extend the message the client is already reading."""

    def __init__(self, client: Dialect, *, model: str, block_index: int, created: int) -> None:
        self._client = client
        self._model = model
        self._block_index = block_index
        self._created = created

    def text(self, text: str) -> bytes:
        if self._client is Dialect.ANTHROPIC:
            delta = {"type": "text_delta", "text": text}
            return anthropic_frame(
                b"content_block_delta",
                {"type": "content_block_delta", "index": self._block_index, "delta": delta},
            )
        return self._openai_chunk({"content": text}, None)

    def finish(self, provider: Dialect, reason: str | None) -> list[bytes]:
        if self._client is Dialect.ANTHROPIC:
            stop = (
                reason
                if provider is Dialect.ANTHROPIC
                else anthropic_stop_reason(reason, has_tool_calls=False, refused=False)
            )
            return [
                anthropic_frame(
                    b"content_block_stop", {"type": "content_block_stop", "index": self._block_index}
                ),
                anthropic_frame(
                    b"message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop or "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 0},
                    },
                ),
                MESSAGE_STOP_FRAME,
            ]
        finish = reason if provider is Dialect.OPENAI else openai_finish_reason(reason)
        return [self._openai_chunk({}, finish or "stop"), DONE_FRAME]

    def _openai_chunk(self, delta: dict[str, Any], finish: str | None) -> bytes:
        chunk = {
            "id": "chatcmpl-detour-resumed",
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return openai_frame(chunk)
