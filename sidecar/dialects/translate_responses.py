"""Response and error translation between OpenAI Chat Completions and Anthropic Messages.

Non-streaming answers and upstream error bodies, as pure functions; the stream state machines in
`translate_streams` reuse the tables and usage arithmetic below, so both paths agree.

| Anthropic Message                        | OpenAI chat.completion                                     |
|------------------------------------------|------------------------------------------------------------|
| id `msg_X`                               | `chatcmpl-msg_X`; a `msg_chatcmpl-Y` id is unwrapped to    |
|                                          | `chatcmpl-Y` (and the reverse), so a round trip is exact   |
| model                                    | model (the upstream model that answered)                   |
| text blocks                              | message.content (joined with ""); None with only tool calls|
| tool_use blocks                          | tool_calls (ids kept; input ⇄ arguments JSON string)       |
| thinking / server-tool blocks            | dropped                                                    |
| stop_reason end_turn, stop_sequence,     | finish_reason stop                                         |
| pause_turn                               |                                                            |
| max_tokens, model_context_window_exceeded| length                                                     |
| tool_use / refusal                       | tool_calls / content_filter                                |
| usage input + cache_read + cache_creation| prompt_tokens (OpenAI's count includes cached tokens)      |
| usage cache_read_input_tokens            | prompt_tokens_details.cached_tokens                        |
| usage output_tokens                      | completion_tokens; total_tokens = prompt + completion      |

Reverse (`openai_to_anthropic_response`): choices[0] only; finish_reason stop → end_turn (OpenAI does
not say whether a stop sequence matched, so stop_sequence is null), length → max_tokens,
tool_calls / function_call → tool_use, content_filter → refusal. OpenAI answers a *named* tool_choice
with finish_reason "stop"; a message that carries tool calls always gets stop_reason tool_use, because
that is what Anthropic clients check before running tools. A `refusal` becomes a text block and
stop_reason refusal. input_tokens = prompt_tokens - cached_tokens, cache_read_input_tokens =
cached_tokens, cache_creation_input_tokens = 0 (OpenAI does not bill cache writes). Tool-call ids get
the characters Anthropic rejects replaced with `_`; arguments that are not a JSON object raise
`TranslationError`.

Errors keep the upstream status code and message; only the shape and type change. A body that is
not a recognisable error (HTML from a proxy, empty) becomes "upstream provider returned HTTP <status>".

| Anthropic type (status)        | OpenAI type / code                                                |
|--------------------------------|-------------------------------------------------------------------|
| invalid_request_error (400)    | invalid_request_error; code context_length_exceeded when the      |
|                                | message says the prompt is too long                               |
| authentication_error (401)     | invalid_request_error / invalid_api_key                           |
| billing_error (402)            | insufficient_quota / insufficient_quota                           |
| permission_error (403)         | invalid_request_error / permission_denied                         |
| not_found_error (404)          | invalid_request_error / model_not_found (if about a model)        |
| request_too_large (413)        | invalid_request_error / request_too_large                         |
| rate_limit_error (429)         | tokens or requests (as the message says) / rate_limit_exceeded    |
| api_error (500), timeout_error | server_error (code timeout for timeouts)                          |
| overloaded_error (529)         | server_error / overloaded; status stays 529 (OpenAI SDKs treat any|
|                                | 5xx as a retryable server error)                                  |

OpenAI → Anthropic picks the type by status: 400 invalid_request_error, 401 authentication_error,
402 billing_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429
rate_limit_error, 503 and 529 overloaded_error, 504 timeout_error, other 5xx api_error, other 4xx
invalid_request_error. OpenAI's context_length_exceeded message is prefixed "prompt is too long: ",
the words Anthropic clients look for before compacting a conversation. In-band stream errors carry
no status; their type comes from OpenAI's type/code instead (`anthropic_error_type_from_openai`).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.errors import error_type_for
from sidecar.dialects.translate_requests_to_anthropic import MALFORMED, anthropic_tool_id, parse_arguments
from sidecar.errors import TranslationError

__all__ = [
    "anthropic_error_to_openai",
    "anthropic_error_type_from_openai",
    "anthropic_response_id",
    "anthropic_stop_reason",
    "anthropic_to_openai_response",
    "anthropic_usage",
    "openai_error_object",
    "openai_error_to_anthropic",
    "openai_finish_reason",
    "openai_response_id",
    "openai_to_anthropic_response",
    "openai_usage",
]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("invalid_request_error", "permission_denied"),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "timeout_error": ("server_error", "timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}
_ANTHROPIC_ERRORS_BY_OPENAI_CODE = {
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "invalid_api_key": "authentication_error",
    "context_length_exceeded": "invalid_request_error",
    "model_not_found": "not_found_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
    "invalid_request_error": "invalid_request_error",
}


# ---------------------------------------------------------------- shared vocabulary


def openai_response_id(anthropic_id: str) -> str:
    return anthropic_id[4:] if anthropic_id.startswith("msg_chatcmpl-") else f"chatcmpl-{anthropic_id}"


def anthropic_response_id(openai_id: str) -> str:
    return openai_id[9:] if openai_id.startswith("chatcmpl-msg_") else f"msg_{openai_id}"


def openai_finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def anthropic_stop_reason(finish_reason: str | None, *, has_tool_calls: bool, refused: bool) -> str:
    if refused:
        return "refusal"
    if has_tool_calls and finish_reason in ("stop", "tool_calls", "function_call"):
        return "tool_use"
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def openai_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic usage (input excludes cached tokens) → OpenAI usage (prompt includes them)."""
    usage = usage or {}
    cache_read = usage.get("cache_read_input_tokens")
    prompt = (
        (usage.get("input_tokens") or 0) + (cache_read or 0) + (usage.get("cache_creation_input_tokens") or 0)
    )
    completion = usage.get("output_tokens") or 0
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_read is not None:
        result["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return result


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """OpenAI usage → Anthropic usage; the cached part of prompt_tokens moves to cache_read."""
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": max((usage.get("prompt_tokens") or 0) - cached, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


# ---------------------------------------------------------------- responses


def anthropic_to_openai_response(body: dict[str, Any], *, created: int) -> dict[str, Any]:
    """An Anthropic Message → an OpenAI chat.completion."""
    try:
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in body.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                function = {"name": block["name"], "arguments": arguments}
                tool_calls.append({"id": block["id"], "type": "function", "function": function})
        content = "".join(texts) if texts or not tool_calls else None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": openai_finish_reason(body.get("stop_reason")),
        }
        return {
            "id": openai_response_id(body["id"]),
            "object": "chat.completion",
            "created": created,
            "model": body["model"],
            "choices": [choice],
            "usage": openai_usage(body.get("usage")),
        }
    except MALFORMED as exc:
        raise TranslationError(f"malformed Anthropic response: {exc!r}") from exc


def openai_to_anthropic_response(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion → an Anthropic Message (its first choice)."""
    try:
        choices = body.get("choices") or ()
        if not choices:
            raise TranslationError("OpenAI response has no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        refusal = message.get("refusal")
        if refusal:
            content.append({"type": "text", "text": refusal})
        tool_calls = message.get("tool_calls") or ()
        for position, call in enumerate(tool_calls):
            function = call["function"]
            where = f"choices[0].message.tool_calls[{position}]"
            tool_use = {
                "type": "tool_use",
                "id": anthropic_tool_id(call["id"]),
                "name": function["name"],
                "input": parse_arguments(function.get("arguments"), where),
            }
            content.append(tool_use)
        stop_reason = anthropic_stop_reason(
            choice.get("finish_reason"), has_tool_calls=bool(tool_calls), refused=bool(refusal)
        )
        return {
            "id": anthropic_response_id(body["id"]),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": anthropic_usage(body.get("usage")),
        }
    except MALFORMED as exc:
        raise TranslationError(f"malformed OpenAI response: {exc!r}") from exc


# ---------------------------------------------------------------- errors


def anthropic_error_to_openai(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An upstream Anthropic error body (possibly garbage) → (status, OpenAI error body)."""
    error_type, message, _ = _error_fields(body)
    if error_type not in _OPENAI_ERRORS:
        error_type = error_type_for(Dialect.ANTHROPIC, status)
    return status, {"error": openai_error_object(error_type, message or _generic_message(status))}


def openai_error_object(anthropic_type: str, message: str) -> dict[str, Any]:
    """The OpenAI `error` object for an Anthropic error type and message (also used in streams)."""
    openai_type, code = _OPENAI_ERRORS.get(anthropic_type, ("server_error", None))
    lowered = message.lower()
    if anthropic_type == "rate_limit_error" and "token" in lowered:
        openai_type = "tokens"
    elif anthropic_type == "invalid_request_error" and "prompt is too long" in lowered:
        code = "context_length_exceeded"
    elif anthropic_type == "not_found_error" and "model" in lowered:
        code = "model_not_found"
    return {"message": message, "type": openai_type, "param": None, "code": code}


def openai_error_to_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An upstream OpenAI error body (possibly garbage) → (status, Anthropic error body)."""
    _, message, code = _error_fields(body)
    error_type = error_type_for(Dialect.ANTHROPIC, status)
    message = message or _generic_message(status)
    if code == "context_length_exceeded" and "prompt is too long" not in message.lower():
        message = f"prompt is too long: {message}"
    error = {"type": error_type, "message": message}
    return status, {"type": "error", "error": error}


def anthropic_error_type_from_openai(error: dict[str, Any]) -> str:
    """The Anthropic type for an OpenAI in-band error object, which carries no HTTP status."""
    for key in ("code", "type"):
        found = _ANTHROPIC_ERRORS_BY_OPENAI_CODE.get(str(error.get(key)))
        if found:
            return found
    return "api_error"


def _generic_message(status: int) -> str:
    return f"upstream provider returned HTTP {status}"


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(type, message, code) from an error body of either dialect or a common variant; Nones if garbage."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error", payload)
    if isinstance(error, str):
        return None, error or None, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message") or error.get("detail")
    error_type, code = error.get("type"), error.get("code")
    return (
        error_type if isinstance(error_type, str) else None,
        message if isinstance(message, str) and message else None,
        code if isinstance(code, str) else None,
    )
