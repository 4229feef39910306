"""Anthropic Messages request → OpenAI Chat Completions request (rules: `translate_requests`)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sidecar.dialects.translate_requests_to_anthropic import EMPTY_SCHEMA, MALFORMED
from sidecar.errors import TranslationError

__all__ = ["anthropic_to_openai_request"]

_REASONING_MODEL = re.compile(r"(?:^|/)(?:o\d|gpt-5)")


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
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block["name"], "arguments": arguments}
            tool_calls.append({"id": block["id"], "type": "function", "function": function})
        elif kind not in ("thinking", "redacted_thinking"):
            raise TranslationError(f"{where}: {kind!r} blocks cannot be sent to OpenAI")
    text = "".join(texts) if texts or not tool_calls else None
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message
