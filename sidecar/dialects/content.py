"""Content both translation directions carry, converted one way and back in one place.

A tool call is the one piece of content that appears in requests (the conversation's history) and in
answers alike, in both dialects, so the request and response translators of both directions share
these conversions instead of importing them from each other:

| OpenAI                                  | Anthropic                                                    |
|-----------------------------------------|--------------------------------------------------------------|
| tool_calls[i] {id, function {name,      | tool_use block {id, name, input}: arguments parsed, and they |
| arguments (a JSON string)}}             | must be a JSON object; input serialised back to a string     |
| tool call id                            | kept; characters outside [A-Za-z0-9_-] become `_`, so the    |
|                                         | result that names it still matches                           |
| function without parameters             | input_schema `{"type": "object", "properties": {}}`          |

An input nested deeper than orjson writes cannot become arguments: `TranslationError` (`json_out`).

`MALFORMED` is what a translator catches to turn input that is not the shape the API documents into
a `TranslationError`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from sidecar.dialects.json_out import write_json
from sidecar.errors import TranslationError

MALFORMED = (KeyError, TypeError, AttributeError, ValueError, IndexError)
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_TOOL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def anthropic_tool_id(tool_call_id: str) -> str:
    """A tool-call id Anthropic accepts (`^[A-Za-z0-9_-]+$`); deterministic, so results still match."""
    return _TOOL_ID_UNSAFE.sub("_", tool_call_id) if tool_call_id else "toolu_detour"


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


def anthropic_tool_use(call: dict[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI tool call → an Anthropic tool_use block."""
    function = call["function"]
    return {
        "type": "tool_use",
        "id": anthropic_tool_id(call["id"]),
        "name": function["name"],
        "input": parse_arguments(function.get("arguments"), where),
    }


def openai_tool_call(block: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic tool_use block → an OpenAI tool call."""
    arguments = write_json(block.get("input") or {}, "a tool_use block's input").decode()
    function = {"name": block["name"], "arguments": arguments}
    return {"id": block["id"], "type": "function", "function": function}
