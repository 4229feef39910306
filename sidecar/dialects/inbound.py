"""Turning a client's request body into what the router needs, or a clear 400.

Only the fields routing depends on are checked here (model, messages, stream, and Anthropic's
required max_tokens); everything else passes through untouched for the provider to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.errors import RequestError


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    body: dict[str, Any]
    model: str
    stream: bool


def parse_request(dialect: Dialect, raw: bytes) -> ParsedRequest:
    if not raw:
        raise RequestError("the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required and must be a non-empty string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RequestError("'messages' is required and must be an array", param="messages")
    stream = body.get("stream") or False  # the OpenAI SDK may send an explicit null
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", param="stream")
    if dialect is Dialect.ANTHROPIC:
        if "max_tokens" not in body:
            raise RequestError("max_tokens: Field required", param="max_tokens")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise RequestError("max_tokens: Input should be a valid integer", param="max_tokens")
    return ParsedRequest(body=body, model=model, stream=stream)
