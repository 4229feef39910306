"""Request translation between OpenAI Chat Completions and Anthropic Messages, as pure functions.

When a request must fail over across dialects, the router first asks `unsupported_*_features(body)`.
A reason string means the request cannot be expressed for the other dialect without changing its
meaning, and the router skips that candidate (it never sends a request that silently means something
else). Otherwise the `*_request` functions translate; they raise `TranslationError` only for input
that is malformed (e.g. tool-call arguments that are not a JSON object). Dicts in, dicts out: no I/O.

OpenAI → Anthropic (`openai_to_anthropic_request`):

| OpenAI                                  | Anthropic                                                    |
|-----------------------------------------|--------------------------------------------------------------|
| system / developer messages (anywhere)  | top-level `system`: the one string, else one text block each |
| user / assistant messages               | same roles; consecutive same-role turns merged (alternation) |
| text part, image_url http(s) / data:    | text block, image block with url / base64 source             |
| assistant tool_calls                    | tool_use blocks; arguments parsed (not an object → error)    |
| role tool (consecutive ones)            | ONE user message of tool_result blocks                       |
| tool call ids                           | kept; characters outside [A-Za-z0-9_-] become `_`            |
| tools (function), tool_choice           | name/description/input_schema; auto, none, required→any,     |
|                                         | named function→tool; dropped when there are no tools         |
| parallel_tool_calls: false              | tool_choice.disable_parallel_tool_use: true                  |
| stop (str or list)                      | stop_sequences                                               |
| temperature (0 to 2)                       | clamped to at most 1.0 (Anthropic's range 0 to 1)            |
| top_p                                   | top_p, but dropped when temperature is also given            |
|                                         | (recent Claude models reject both together)                  |
| max_completion_tokens, else max_tokens  | max_tokens (default_max_tokens when absent)                  |
| stream                                  | stream; stream_options dropped (Anthropic always sends usage)|
| user, else safety_identifier            | metadata.user_id                                             |
| empty text, message `name`, image detail| dropped                                                      |
| dropped as hints with no Anthropic      | frequency/presence_penalty, seed, reasoning_effort,          |
| equivalent (meaning is unchanged)       | verbosity, service_tier, store, metadata, prediction,        |
|                                         | prompt_cache_*, function `strict`                            |
| unsupported (router skips Anthropic)    | n > 1, logprobs/top_logprobs, response_format json_object/   |
|                                         | json_schema, audio/modalities audio, logit_bias, legacy      |
|                                         | functions/function_call/role function, web_search_options,   |
|                                         | custom tools, allowed_tools, input_audio and file parts      |

Anthropic → OpenAI (`anthropic_to_openai_request`):

| Anthropic                               | OpenAI                                                       |
|-----------------------------------------|--------------------------------------------------------------|
| system (string or text blocks)          | first message, role system (string or text parts)            |
| user text / image blocks                | user message (a lone text → string; else content parts;       |
|                                         | image url → image_url, base64 → data: URL)                   |
| tool_result blocks                      | role tool messages, placed before the user's other content   |
|                                         | (str or text parts; `is_error` → content prefixed "Error: ") |
| assistant text / tool_use blocks        | content (texts joined with "") / tool_calls; content None    |
|                                         | when there are only tool calls                               |
| thinking / redacted_thinking in history | dropped                                                      |
| tools, tool_choice                      | function tools; auto, none, any→required, tool→function      |
| disable_parallel_tool_use               | parallel_tool_calls: false (only when tools are sent)        |
| stop_sequences                          | stop                                                         |
| max_tokens                              | max_tokens (OpenAI-compatible servers know it); reasoning    |
|                                         | models (o1/o3/o4…, gpt-5…) reject it → max_completion_tokens |
| stream: true                            | stream + stream_options.include_usage (usage must come back) |
| metadata.user_id                        | user                                                         |
| dropped                                 | top_k, cache_control, service_tier, inference_geo, speed,    |
|                                         | output_config.effort, diagnostics                            |
| unsupported (router skips OpenAI)       | thinking enabled/adaptive, output_config.format, server tools|
|                                         | (typed tools), mcp_servers, container, documents and other   |
|                                         | non-text/image/tool blocks, file image sources, images in    |
|                                         | tool results, more than 4 stop_sequences, assistant prefill  |

The two directions live in `translate_requests_to_anthropic` and `translate_requests_to_openai`;
this module holds the rules above, the checks, and the public names.

Assistant prefill (a last assistant message) is flagged, not refused: the resume path of the router,
which knows a provider's `supports_prefill`, may call `anthropic_to_openai_request` directly and the
trailing assistant message is kept as is.
"""

from __future__ import annotations

from typing import Any

from sidecar.dialects.translate_requests_to_anthropic import (
    MALFORMED,
    anthropic_tool_id,
    openai_to_anthropic_request,
)
from sidecar.dialects.translate_requests_to_openai import anthropic_to_openai_request
from sidecar.errors import TranslationError

__all__ = [
    "anthropic_to_openai_request",
    "anthropic_tool_id",
    "openai_to_anthropic_request",
    "unsupported_anthropic_features",
    "unsupported_openai_features",
]

_OPENAI_MAX_STOP = 4
_UNSUPPORTED_OPENAI_PARTS = {"input_audio": "audio input parts", "file": "file input parts"}
_ANTHROPIC_BLOCKS_OK = frozenset(
    {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)


def unsupported_openai_features(body: dict[str, Any]) -> str | None:
    """Why this OpenAI request cannot go to Anthropic unchanged in meaning, or None if it can."""
    try:
        return _unsupported_openai(body)
    except MALFORMED as exc:
        raise TranslationError(f"malformed request: {type(exc).__name__}: {exc}") from exc


def unsupported_anthropic_features(body: dict[str, Any]) -> str | None:
    """Why this Anthropic request cannot go to OpenAI unchanged in meaning, or None if it can."""
    try:
        return _unsupported_anthropic(body)
    except MALFORMED as exc:
        raise TranslationError(f"malformed request: {type(exc).__name__}: {exc}") from exc


def _unsupported_openai(body: dict[str, Any]) -> str | None:
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        return "n > 1: Anthropic returns a single choice"
    if body.get("logprobs") or body.get("top_logprobs"):
        return "logprobs: Anthropic does not return token log probabilities"
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        return f"response_format {response_format['type']}: no equivalent Anthropic guarantee"
    if body.get("audio") or "audio" in (body.get("modalities") or ()):
        return "audio output: Anthropic answers with text only"
    if body.get("logit_bias"):
        return "logit_bias: Anthropic has no token biasing"
    if body.get("functions") or body.get("function_call"):
        return "legacy functions/function_call: use tools"
    if body.get("web_search_options") is not None:
        return "web_search_options: OpenAI's built-in web search"
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type", "function") != "function":
            return f"tools of type {tool.get('type')!r}: only function tools translate"
    tool_choice = body.get("tool_choice")
    if isinstance(tool_choice, dict) and tool_choice.get("type", "function") != "function":
        return f"tool_choice {tool_choice.get('type')!r}: only function choices translate"
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        if message.get("role") == "function":
            return "messages with role function: use tool messages"
        if message.get("audio"):
            return "assistant audio in the conversation"
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                reason = isinstance(part, dict) and _UNSUPPORTED_OPENAI_PARTS.get(str(part.get("type")))
                if reason:
                    return f"{reason}: not translated for Anthropic"
    return None


def _unsupported_anthropic(body: dict[str, Any]) -> str | None:
    """Why this Anthropic request cannot go to OpenAI unchanged in meaning, or None if it can."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type", "disabled") != "disabled":
        return "extended thinking: OpenAI chat completions return no thinking blocks"
    if (body.get("output_config") or {}).get("format"):
        return "output_config.format: structured outputs are not translated"
    if body.get("mcp_servers"):
        return "mcp_servers: Anthropic-hosted MCP connector"
    if body.get("container"):
        return "container: Anthropic-hosted code execution"
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") not in (None, "custom"):
            return f"server tool {tool.get('type')!r}: runs on Anthropic's side"
    if len(body.get("stop_sequences") or ()) > _OPENAI_MAX_STOP:
        return f"more than {_OPENAI_MAX_STOP} stop_sequences: OpenAI accepts at most {_OPENAI_MAX_STOP}"
    messages = body.get("messages") or ()
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            reason = _unsupported_anthropic_blocks(content)
            if reason:
                return reason
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        return "assistant prefill: OpenAI does not continue a final assistant message"
    return None


def _unsupported_anthropic_blocks(blocks: list[Any]) -> str | None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind not in _ANTHROPIC_BLOCKS_OK:
            return f"{kind} content blocks: no OpenAI equivalent"
        if kind == "image" and (block.get("source") or {}).get("type") not in ("url", "base64"):
            return "image from the Files API: OpenAI cannot fetch it"
        inner_blocks = block.get("content") if kind == "tool_result" else None
        if isinstance(inner_blocks, list) and any(
            isinstance(inner, dict) and inner.get("type") != "text" for inner in inner_blocks
        ):
            return "non-text tool_result content: OpenAI tool messages are text only"
    return None
