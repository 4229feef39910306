"""Stream translation as sans-IO state machines: one upstream `SseEvent` in, client SSE frames out.

These run for every streamed token, so `feed` does O(1) work per event: it never rescans what was
already sent, and each returned item is one complete frame ready to write. `finish` is called once the
upstream stream has ended (after `data: [DONE]` or `message_stop`, or when it was cut); it is
idempotent, and `completed` tells the caller whether the answer really finished.

The classes live in `translate_streams_to_openai` and `translate_streams_to_anthropic`; this module
holds the rules and the public names.

Anthropic → OpenAI (`AnthropicToOpenAIStream`):

| Anthropic event                         | OpenAI chunk(s)                                              |
|-----------------------------------------|--------------------------------------------------------------|
| message_start                           | role chunk `{"role":"assistant","content":"","refusal":null}`|
|                                         | (id `chatcmpl-<message id>`, model of the message)           |
| content_block_start text / text_delta   | content delta (an empty text start sends nothing)            |
| content_block_start tool_use            | tool_calls delta: index (tool blocks counted from 0), id,    |
|                                         | type, function name, arguments ""                            |
| input_json_delta                        | tool_calls delta with the argument fragment                  |
| message_delta                           | empty delta with finish_reason (table in translate_responses)|
| message_stop                            | usage chunk (`choices: []`) when include_usage               |
| error                                   | in-band `data: {"error": {...}}`, the OpenAI SDKs raise on it|
| ping, thinking / citations / signature  | nothing                                                      |
| finish()                                | pending usage chunk if the message completed, `data: [DONE]` |

With include_usage every chunk carries `"usage": null`, as OpenAI's own do. Usage is the Anthropic
usage of message_start updated by message_delta (its counts are cumulative).

OpenAI → Anthropic (`OpenAIToAnthropicStream`):

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
| `data: [DONE]` or finish()              | message_delta (stop_reason, usage with input/output/cache    |
|                                         | counts, 0 when unknown), message_stop                        |
| `{"error": {...}}`                      | event `error`; finish() then sends nothing more              |

finish() never invents a finish reason: a stream cut before one gets no finish chunk (OpenAI) or a
message_delta with stop_reason null (Anthropic), and the router reports the failure in-band. An event
whose data is not the JSON expected raises `TranslationError`; the caller drops it, counts it and keeps
feeding. Tool-call deltas without an `index` (some OpenAI-compatible servers) are keyed by their id,
and fragments with neither belong to the latest tool call.
"""

from __future__ import annotations

from sidecar.dialects.translate_streams_to_anthropic import OpenAIToAnthropicStream
from sidecar.dialects.translate_streams_to_openai import AnthropicToOpenAIStream

__all__ = ["AnthropicToOpenAIStream", "OpenAIToAnthropicStream"]
