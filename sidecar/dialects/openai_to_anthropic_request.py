"""An OpenAI Chat Completions request → an Anthropic Messages request: where an OpenAI client's
request becomes one an Anthropic provider can answer.

Before translating, the router asks `unsupported_openai_features(body)` (through
`exchange_plan.plan_exchange`). A reason string means the request cannot be expressed for Anthropic
without changing its meaning, and the router skips that candidate: it never sends a request that
silently means something else. Otherwise `openai_to_anthropic_request` translates; it raises
`TranslationError` only for input that is malformed (e.g. tool-call arguments that are not a JSON
object). Dicts in, dicts out: no I/O.

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
| temperature (0 to 2)                    | clamped to at most 1.0 (Anthropic's range 0 to 1)            |
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
"""

from __future__ import annotations

import re
from typing import Any

from sidecar.dialects.content import EMPTY_SCHEMA, MALFORMED, anthropic_tool_id, anthropic_tool_use
from sidecar.errors import TranslationError

_UNSUPPORTED_OPENAI_PARTS = {"input_audio": "audio input parts", "file": "file input parts"}
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^;,]*)*?);base64,(.*)", re.DOTALL)


def unsupported_openai_features(body: dict[str, Any]) -> str | None:
    """Why this OpenAI request cannot go to Anthropic unchanged in meaning, or None if it can."""
    try:
        return _unsupported_openai(body)
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
        blocks.append(anthropic_tool_use(call, f"{where}.tool_calls[{position}]"))
    return blocks


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
