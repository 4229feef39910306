"""Reading translated streams back the way the official SDKs do: each frame must be one complete SSE
event their parsers accept, and their own accumulators must build the answer from them."""

from __future__ import annotations

from typing import Any

import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from sidecar.dialects.exchange_plan import StreamConverter
from sidecar.dialects.sse import SseDecoder, SseEvent

ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
DONE = b"data: [DONE]\n\n"


def run(translator: StreamConverter, events: list[SseEvent]) -> list[bytes]:
    frames = [frame for event in events for frame in translator.feed(event)]
    return frames + translator.finish()


def single_event(frame: bytes) -> SseEvent:
    """The one SSE event a frame holds; fails if it holds more, fewer, or an unfinished one."""
    decoder = SseDecoder()
    events = decoder.feed(frame)
    assert len(events) == 1, frame
    assert not decoder.pending, frame
    return events[0]


def openai_payloads(frames: list[bytes]) -> list[dict[str, Any]]:
    """Chunks (and error objects) the OpenAI SDK would see; asserts framing and [DONE] last."""
    assert frames[-1] == DONE
    payloads = []
    for frame in frames[:-1]:
        event = single_event(frame)
        assert event.event is None
        assert frame.startswith(b"data: {")
        payloads.append(orjson.loads(event.data))
    return payloads


def openai_chunks(frames: list[bytes]) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate(payload) for payload in openai_payloads(frames)]


def anthropic_payloads(frames: list[bytes]) -> list[dict[str, Any]]:
    payloads = []
    for frame in frames:
        event = single_event(frame)
        payload = orjson.loads(event.data)
        assert event.event == payload["type"]
        if payload["type"] != "error":
            ANTHROPIC_EVENT.validate_python(payload)
        payloads.append(payload)
    return payloads


def accumulate_anthropic(payloads: list[dict[str, Any]]) -> Message:
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for payload in payloads:
        if payload["type"] in ("ping", "error"):
            continue
        event = ANTHROPIC_EVENT.validate_python(payload)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def accumulate_openai(chunks: list[ChatCompletionChunk]) -> ChatCompletion:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return ChatCompletion.model_validate(state.get_final_completion().model_dump())


def frames_to_payloads(frames: list[bytes]) -> list[dict[str, Any]]:
    decoder = SseDecoder()
    events = decoder.feed(b"".join(frames))
    assert len(events) == len(frames)
    return [orjson.loads(event.data) for event in events if event.data != "[DONE]"]
