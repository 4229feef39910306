"""OpenAI Chat Completions request → Anthropic Messages request (rules: `translate_requests`)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sidecar.errors import TranslationError

__all__ = ["anthropic_tool_id", "openai_to_anthropic_request", "parse_arguments"]

MALFORMED = (KeyError, TypeError, AttributeError, ValueError, IndexError)
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_TOOL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^;,]*)*?);base64,(.*)", re.DOTALL)


def anthropic_tool_id(tool_call_id: str) -> str:
    """A tool-call id Anthropic accepts (`^[A-Za-z0-9_-]+$`); deterministic, so results still match."""
    return _TOOL_ID_UNSAFE.sub("_", tool_call_id) if tool_call_id else "toolu_detour"


def openai_to_anthropic_request(
    body: dict[str, Any], *, upstream_model: str, default_max_tokens: int
) -> dict[str, Any]:
    try:
        return _openai_to_anthropic(body, upstream_model, default_max_tokens)
    except TranslationError:
        raise
    except MALFORMED as exc:
        raise TranslationError(f"malformed OpenAI request: {exc!r}") from exc


def _openai_to_anthropic(
    body: dict[str, Any], upstream_model: str, default_max_tokens: int
) -> dict[str, Any]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(body["messages"]):
        role = message["role"]
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            system.extend(text for text in _part_texts(message.get("content"), where) if text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(message)]
        else:
            raise TranslationError(f"{where}: role {role!r} cannot be sent to Anthropic")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": turns}
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    if system:
        out["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": t} for t in system]
    _openai_tools_to_anthropic(body, out)
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(float(temperature), 1.0)
    elif body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    if body.get("stream"):
        out["stream"] = True
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["metadata"] = {"user_id": user}
    return out


def _openai_tools_to_anthropic(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return
    anthropic_tools = []
    for tool in tools:
        function = tool["function"]
        converted = {"name": function["name"], "input_schema": function.get("parameters") or EMPTY_SCHEMA}
        if function.get("description"):
            converted["description"] = function["description"]
        anthropic_tools.append(converted)
    out["tools"] = anthropic_tools
    choice = body.get("tool_choice")
    if choice is None or choice == "auto":
        converted_choice: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        converted_choice = {"type": "none"}
    elif choice == "required":
        converted_choice = {"type": "any"}
    elif isinstance(choice, dict):
        converted_choice = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise TranslationError(f"tool_choice {choice!r} cannot be sent to Anthropic")
    if body.get("parallel_tool_calls") is False and converted_choice["type"] != "none":
        converted_choice["disable_parallel_tool_use"] = True
    if choice is not None or "disable_parallel_tool_use" in converted_choice:
        out["tool_choice"] = converted_choice


def _part_texts(content: Any, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            texts.append(part["text"])
        elif kind == "refusal":
            texts.append(part["refusal"])
        else:
            raise TranslationError(f"{where}: content part {kind!r} is not text")
    return texts


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text":
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part["image_url"]["url"], where))
        else:
            raise TranslationError(f"{where}: content part {kind!r} cannot be sent to Anthropic")
    return blocks


def _image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise TranslationError(f"{where}: image_url must be an http(s) URL or a base64 data: URL")
    source = {"type": "base64", "media_type": match.group(1), "data": match.group(3)}
    return {"type": "image", "source": source}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": text} for text in _part_texts(message.get("content"), where) if text
    ]
    for position, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        call_where = f"{where}.tool_calls[{position}]"
        blocks.append(
            {
                "type": "tool_use",
                "id": anthropic_tool_id(call["id"]),
                "name": function["name"],
                "input": parse_arguments(function.get("arguments"), call_where),
            }
        )
    return blocks


def parse_arguments(arguments: str | None, where: str) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as the object Anthropic's `input` must be."""
    if not arguments or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"{where}: arguments are not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise TranslationError(f"{where}: arguments must be a JSON object")
    return parsed


def _tool_result_block(message: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": anthropic_tool_id(message["tool_call_id"])}
    content = message.get("content")
    if isinstance(content, list):
        texts = [{"type": "text", "text": part["text"]} for part in content if part.get("text")]
        if texts:
            block["content"] = texts
    elif content:
        block["content"] = content
    return block
