"""An Anthropic Messages request → an OpenAI Chat Completions request: where an Anthropic client's
request becomes one an OpenAI provider can answer.

Before translating, the router asks `unsupported_anthropic_features(body)` (through
`exchange_plan.plan_exchange`). A reason string means the request cannot be expressed for OpenAI
without changing its meaning, and the router skips that candidate: it never sends a request that
silently means something else. Otherwise `anthropic_to_openai_request` translates; it raises
`TranslationError` only for input that is malformed. Dicts in, dicts out: no I/O.

| Anthropic                               | OpenAI                                                       |
|-----------------------------------------|--------------------------------------------------------------|
| system (string or text blocks)          | first message, role system (string or text parts)            |
| user text / image blocks                | user message (a lone text → string; else content parts;      |
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

Assistant prefill (a last assistant message) is flagged, not refused: the resume path of the router,
which knows a provider's `supports_prefill`, may call `anthropic_to_openai_request` directly and the
trailing assistant message is kept as is.
"""

from __future__ import annotations

import re
from typing import Any

from sidecar.dialects.content import EMPTY_SCHEMA, MALFORMED, openai_tool_call
from sidecar.errors import TranslationError

_REASONING_MODEL = re.compile(r"(?:^|/)(?:o\d|gpt-5)")
_OPENAI_MAX_STOP = 4
_ANTHROPIC_BLOCKS_OK = frozenset(
    {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)


def unsupported_anthropic_features(body: dict[str, Any]) -> str | None:
    """Why this Anthropic request cannot go to OpenAI unchanged in meaning, or None if it can."""
    try:
        return _unsupported_anthropic(body)
    except MALFORMED as exc:
        raise TranslationError(f"malformed request: {type(exc).__name__}: {exc}") from exc


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


def anthropic_to_openai_request(body: dict[str, Any], *, upstream_model: str) -> dict[str, Any]:
    try:
        return _anthropic_to_openai(body, upstream_model)
    except TranslationError:
        raise
    except MALFORMED as exc:
        raise TranslationError(f"malformed Anthropic request: {exc!r}") from exc


def _anthropic_to_openai(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif system:
        messages.append({"role": "system", "content": [{"type": "text", "text": b["text"]} for b in system]})
    for index, message in enumerate(body["messages"]):
        where = f"messages[{index}]"
        if message["role"] == "user":
            messages.extend(_openai_user_messages(message["content"], where))
        elif message["role"] == "assistant":
            messages.append(_openai_assistant_message(message["content"], where))
        else:
            raise TranslationError(f"{where}: role {message['role']!r} cannot be sent to OpenAI")

    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    token_field = "max_completion_tokens" if _REASONING_MODEL.search(upstream_model) else "max_tokens"
    out[token_field] = body["max_tokens"]
    _anthropic_tools_to_openai(body, out)
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            out[field] = body[field]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user_id = (body.get("metadata") or {}).get("user_id")
    if user_id:
        out["user"] = user_id
    return out


def _anthropic_tools_to_openai(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return
    functions = []
    for tool in tools:
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or EMPTY_SCHEMA}
        if tool.get("description"):
            function["description"] = tool["description"]
        functions.append({"type": "function", "function": function})
    out["tools"] = functions
    choice = body.get("tool_choice")
    if not choice:
        return
    kind = choice["type"]
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in ("auto", "none", "any"):
        out["tool_choice"] = "required" if kind == "any" else kind
    else:
        raise TranslationError(f"tool_choice {kind!r} cannot be sent to OpenAI")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


def _openai_user_messages(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block["type"]
        if kind == "tool_result":
            messages.append(_openai_tool_message(block, where))
        elif kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block["source"], where)}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise TranslationError(f"{where}: {kind!r} blocks cannot be sent to OpenAI")
    if len(parts) == 1 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _image_url(source: dict[str, Any], where: str) -> str:
    if source["type"] == "url":
        return str(source["url"])
    if source["type"] == "base64":
        return f"data:{source['media_type']};base64,{source['data']}"
    raise TranslationError(f"{where}: image source {source['type']!r} cannot be sent to OpenAI")


def _openai_tool_message(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        if any(inner["type"] != "text" for inner in content):
            raise TranslationError(f"{where}: tool_result content must be text for OpenAI")
        texts = [inner["text"] for inner in content]
        content = texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]
    if block.get("is_error"):
        if isinstance(content, str):
            content = "Error: " + content
        else:
            content = [{"type": "text", "text": "Error:"}, *content]
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}


def _openai_assistant_message(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(openai_tool_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise TranslationError(f"{where}: {kind!r} blocks cannot be sent to OpenAI")
    text = "".join(texts) if texts or not tool_calls else None
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message
