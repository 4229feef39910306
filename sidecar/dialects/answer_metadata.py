"""What an answer says about itself, in the other dialect's words: its id, why it ended, its usage.

Whole responses, translated streams and resumed streams all carry these fields across, so they map
them here, one way and back, and agree:

| Anthropic                                | OpenAI                                                     |
|------------------------------------------|------------------------------------------------------------|
| id `msg_X`                               | `chatcmpl-msg_X`; a `msg_chatcmpl-Y` id is unwrapped to    |
|                                          | `chatcmpl-Y` (and the reverse), so a round trip is exact   |
| stop_reason end_turn, stop_sequence,     | finish_reason stop                                         |
| pause_turn                               |                                                            |
| max_tokens, model_context_window_exceeded| length                                                     |
| tool_use / refusal                       | tool_calls / content_filter                                |
| usage input + cache_read + cache_creation| prompt_tokens (OpenAI's count includes cached tokens)      |
| usage cache_read_input_tokens            | prompt_tokens_details.cached_tokens                        |
| usage output_tokens                      | completion_tokens; total_tokens = prompt + completion      |

The reverse: finish_reason stop → end_turn (OpenAI does not say whether a stop sequence matched),
length → max_tokens, tool_calls / function_call → tool_use, content_filter → refusal. OpenAI answers
a *named* tool_choice with finish_reason "stop"; an answer that carries tool calls always gets
stop_reason tool_use, because that is what Anthropic clients check before running tools, and an
answer with a refusal gets stop_reason refusal. input_tokens = prompt_tokens - cached_tokens,
cache_read_input_tokens = cached_tokens, cache_creation_input_tokens = 0 (OpenAI does not bill cache
writes).

These fields are the provider's word about its answer, not the answer: a value that is not what the
API documents — usage that is no object, a count that is no non-negative integer below 2**53 (exact
in every JSON reader; four of them cannot add up past 64 bits, which orjson would refuse to write),
a reason that is no string — is unreadable and treated as absent, as telemetry treats it, so it
never costs the client its answer or its stream.
"""

from __future__ import annotations

from typing import Any

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def openai_response_id(anthropic_id: str) -> str:
    return anthropic_id[4:] if anthropic_id.startswith("msg_chatcmpl-") else f"chatcmpl-{anthropic_id}"


def anthropic_response_id(openai_id: str) -> str:
    return openai_id[9:] if openai_id.startswith("chatcmpl-msg_") else f"msg_{openai_id}"


_MAX_COUNT = 2**53


def token_count(value: Any) -> int | None:
    """A usage count as the APIs document it, else None (absent)."""
    return value if type(value) is int and 0 <= value < _MAX_COUNT else None


def openai_finish_reason(stop_reason: Any) -> str:
    if not isinstance(stop_reason, str):
        stop_reason = None
    return _FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def anthropic_stop_reason(finish_reason: Any, *, has_tool_calls: bool, refused: bool) -> str:
    if refused:
        return "refusal"
    if not isinstance(finish_reason, str):
        finish_reason = None
    if has_tool_calls and finish_reason in ("stop", "tool_calls", "function_call"):
        return "tool_use"
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage (input excludes cached tokens) → OpenAI usage (prompt includes them)."""
    if not isinstance(usage, dict):
        usage = {}
    cache_read = token_count(usage.get("cache_read_input_tokens"))
    prompt = (
        (token_count(usage.get("input_tokens")) or 0)
        + (cache_read or 0)
        + (token_count(usage.get("cache_creation_input_tokens")) or 0)
    )
    completion = token_count(usage.get("output_tokens")) or 0
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_read is not None:
        result["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return result


def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI usage → Anthropic usage; the cached part of prompt_tokens moves to cache_read."""
    if not isinstance(usage, dict):
        usage = {}
    details = usage.get("prompt_tokens_details")
    cached = (token_count(details.get("cached_tokens")) if isinstance(details, dict) else None) or 0
    return {
        "input_tokens": max((token_count(usage.get("prompt_tokens")) or 0) - cached, 0),
        "output_tokens": token_count(usage.get("completion_tokens")) or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
