"""A provider's whole 2xx answer, checked to be an answer of its dialect before anyone relies on it.

A 200 whose body is HTML from a proxy, truncated JSON, or JSON of another shape is not a success:
passed on, it would break the client's SDK with a parse error it cannot retry. It is a failed
attempt (`MalformedAnswer`), and the router fails over (docs/architecture.md §3, §8).

The check is the least that makes the answer usable — a JSON object with the list a client reads
(`choices` for OpenAI, `content` for Anthropic) — so that OpenAI- and Anthropic-compatible servers
that omit optional fields still pass. The parsed answer is returned, so nothing parses it twice.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.errors import MalformedAnswer


def parse_answer(dialect: Dialect, raw: bytes) -> dict[str, Any]:
    """The answer as a dict, or `MalformedAnswer` saying what is wrong (never its content)."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedAnswer(f"the answer is not JSON ({len(raw)} bytes)") from None
    if not isinstance(answer, dict):
        raise MalformedAnswer(f"the answer is JSON {type(answer).__name__}, not an object")
    if dialect is Dialect.OPENAI:
        if not isinstance(answer.get("choices"), list):
            raise MalformedAnswer("the answer is not a chat completion: it has no 'choices' list")
    elif not isinstance(answer.get("content"), list) or answer.get("type", "message") != "message":
        raise MalformedAnswer("the answer is not a message: it has no 'content' list")
    return answer
