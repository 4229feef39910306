"""The Anthropic Messages API as a simulated provider speaks it: bodies, named SSE events, errors and
headers, shaped after the real service and the official SDK's types (`anthropic.types`).

Pure: each method takes request data and returns an `Answer`. The event order of a stream is the
real one (message_start, content_block_start, ping, deltas, content_block_stop, message_delta,
message_stop), so Detour's translation is tested against what production sends.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.simulate.behaviours import ErrorReply, RateLimit, ServerError
from sidecar.simulate.limiter import WindowState
from sidecar.simulate.wire import (
    Answer,
    Completion,
    anthropic_stop_reason,
    random_id,
    reset_seconds,
    rfc3339_after,
    split_fragments,
    split_words,
)

_MODELS = (
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
)
_UNLIMITED = WindowState(admitted=True, limit=4_000, remaining=3_999, reset_in=0.015)
_TOKEN_LIMIT = 400_000
_DEFAULT_REQUEST_LIMIT = 50


def _error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"request-id": random_id("req_011C", 20)}
    if extra:
        headers.update(extra)
    return headers


def limit_headers(limit: int, remaining: int, reset_s: float) -> dict[str, str]:
    """The anthropic-ratelimit-* family: the requests bucket as given, the token buckets full."""
    headers = {
        "anthropic-ratelimit-requests-limit": str(limit),
        "anthropic-ratelimit-requests-remaining": str(remaining),
        "anthropic-ratelimit-requests-reset": rfc3339_after(reset_s),
    }
    now = rfc3339_after(0)
    for bucket in ("tokens", "input-tokens", "output-tokens"):
        headers[f"anthropic-ratelimit-{bucket}-limit"] = str(_TOKEN_LIMIT)
        headers[f"anthropic-ratelimit-{bucket}-remaining"] = str(_TOKEN_LIMIT)
        headers[f"anthropic-ratelimit-{bucket}-reset"] = now
    return headers


def _frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class AnthropicDialect:
    name = "anthropic"
    endpoint = "/v1/messages"
    base_path = ""

    def _fail(self, status: int, type_: str, message: str) -> Answer:
        return Answer(status, _headers(), _error_body(type_, message))

    def authenticate(self, headers: dict[str, str], api_key: str | None) -> Answer | None:
        # API keys travel in `x-api-key`; newer SDKs (anthropic >= 2.x) send them as a bearer token.
        key = headers.get("x-api-key", "").strip()
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if not key and scheme.lower() == "bearer":
            key = token.strip()
        if not key:
            return self._fail(401, "authentication_error", "x-api-key header is required")
        if api_key is not None and key != api_key:
            return self._fail(401, "authentication_error", "invalid x-api-key")
        return None

    def validate(self, headers: dict[str, str], body: Any) -> Answer | None:
        if not headers.get("anthropic-version"):
            return self._fail(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return self._fail(
                400, "invalid_request_error", "There was an error parsing the body of your request."
            )
        for field_name, kind, kind_name in (
            ("model", str, "a valid string"),
            ("messages", list, "a valid list"),
            ("max_tokens", int, "a valid integer"),
        ):
            value = body.get(field_name)
            if value is None:
                return self._fail(400, "invalid_request_error", f"{field_name}: Field required")
            if not isinstance(value, kind) or isinstance(value, bool):
                return self._fail(400, "invalid_request_error", f"{field_name}: Input should be {kind_name}")
        if body["max_tokens"] < 1:
            return self._fail(
                400, "invalid_request_error", "max_tokens: Input should be greater than or equal to 1"
            )
        return None

    def complete(self, completion: Completion) -> Answer:
        limits = completion.limits or _UNLIMITED
        bucket = limit_headers(limits.limit, limits.remaining, limits.reset_in)
        headers = _headers({**bucket, **completion.reply.headers})
        if completion.request.get("stream") is True:
            return Answer(200, headers, events=_stream_events(completion))
        return Answer(200, headers, _message_body(completion))

    def rate_limited(self, behaviour: RateLimit, model: str, limit: int | None = None) -> Answer:
        limit = _DEFAULT_REQUEST_LIMIT if limit is None else limit
        message = (
            f"This request would exceed the rate limit for your organization of {limit} requests per minute. "
            "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response "
            "headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later."
        )
        headers = limit_headers(limit, 0, reset_seconds(behaviour)) if behaviour.limit_headers else {}
        if behaviour.retry_after is not None:
            headers["retry-after"] = behaviour.retry_after
        return Answer(
            429, _headers({**headers, **behaviour.headers}), _error_body("rate_limit_error", message)
        )

    def server_error(self, behaviour: ServerError) -> Answer:
        if behaviour.status == 529:
            return self._fail(529, "overloaded_error", behaviour.message or "Overloaded")
        return self._fail(behaviour.status, "api_error", behaviour.message or "Internal server error")

    def error(self, behaviour: ErrorReply) -> Answer:
        return self._fail(behaviour.status, behaviour.type, behaviour.message)

    def not_found(self, method: str, path: str) -> Answer:
        return self._fail(404, "not_found_error", "Not Found")

    def models(self, extra_model: str | None) -> Answer:
        rows = list(_MODELS)
        if extra_model and all(extra_model != row[0] for row in rows):
            rows.append((extra_model, extra_model, "2025-01-01T00:00:00Z"))
        data = [
            {"type": "model", "id": id_, "display_name": name, "created_at": created, "lifecycle": "active"}
            for id_, name, created in rows
        ]
        body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        return Answer(200, _headers(), body)


def _usage(completion: Completion, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": completion.reply.usage[0],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _blocks(completion: Completion) -> list[dict[str, Any]]:
    """The finished content blocks: text (unless there is none), then the tool call."""
    blocks: list[dict[str, Any]] = []
    call = completion.reply.tool_call
    if completion.text is not None or call is None:
        blocks.append({"type": "text", "text": completion.text or ""})
    if call is not None:
        tool_id = call.id or random_id("toolu_01", 22)
        blocks.append({"type": "tool_use", "id": tool_id, "name": call.name, "input": call.arguments})
    return blocks


def _message(completion: Completion, content: list[dict[str, Any]], output_tokens: int) -> dict[str, Any]:
    return {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": anthropic_stop_reason(completion.reply) if content else None,
        "stop_sequence": None,
        "usage": _usage(completion, output_tokens),
    }


def _message_body(completion: Completion) -> dict[str, Any]:
    return _message(completion, _blocks(completion), completion.reply.usage[1])


def _stream_events(completion: Completion) -> list[bytes]:
    events = [_frame({"type": "message_start", "message": _message(completion, [], 1)})]
    for index, block in enumerate(_blocks(completion)):
        start: dict[str, Any]
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": word} for word in split_words(block["text"])]
        else:
            start = {**block, "input": {}}
            fragments = ["", *split_fragments(orjson.dumps(block["input"]).decode())]
            deltas = [{"type": "input_json_delta", "partial_json": fragment} for fragment in fragments]
        events.append(_frame({"type": "content_block_start", "index": index, "content_block": start}))
        if index == 0:
            events.append(_frame({"type": "ping"}))
        events.extend(_frame({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas)
        events.append(_frame({"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": anthropic_stop_reason(completion.reply), "stop_sequence": None}
    usage = {"output_tokens": completion.reply.usage[1]}
    events.append(_frame({"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(_frame({"type": "message_stop"}))
    return events
