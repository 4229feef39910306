"""The OpenAI Chat Completions API as a simulated provider speaks it: bodies, SSE chunks, errors and
headers, shaped after the real service and the official SDK's types (`openai.types.chat`).

Pure: each method takes request data and returns an `Answer`. Detour's own OpenAI parsing is tested
against these shapes, so they follow the real API down to `refusal: null` and `usage: null`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from sidecar.simulate.behaviours import ErrorReply, RateLimit, ServerError
from sidecar.simulate.limiter import WindowState
from sidecar.simulate.wire import (
    Answer,
    Completion,
    go_duration,
    openai_finish_reason,
    random_id,
    reset_seconds,
    split_fragments,
    split_words,
)

_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_OVERLOADED = "The engine is currently overloaded, please try again later"
_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1")
_UNLIMITED = WindowState(admitted=True, limit=10_000, remaining=9_999, reset_in=0.006)
_TOKEN_LIMIT = 30_000_000
_DEFAULT_REQUEST_LIMIT = 500


def _error_body(
    type_: str, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "x-request-id": random_id("req_", 32),
        "openai-processing-ms": "42",
        "openai-version": "2020-10-01",
    }
    if extra:
        headers.update(extra)
    return headers


def limit_headers(limit: int, remaining: int, reset_s: float) -> dict[str, str]:
    """The x-ratelimit-* family: the requests bucket as given, the tokens bucket nearly full."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-limit-tokens": str(_TOKEN_LIMIT),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-remaining-tokens": str(_TOKEN_LIMIT - 20),
        "x-ratelimit-reset-requests": go_duration(reset_s),
        "x-ratelimit-reset-tokens": "0s",
    }


def _mask(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


class OpenAIDialect:
    name = "openai"
    endpoint = "/v1/chat/completions"
    base_path = "/v1"

    def _fail(
        self, status: int, type_: str, message: str, code: str | None = None, param: str | None = None
    ) -> Answer:
        return Answer(status, _headers(), _error_body(type_, message, code, param))

    def authenticate(self, headers: dict[str, str], api_key: str | None) -> Answer | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._fail(401, "invalid_request_error", _NO_KEY)
        if api_key is not None and token != api_key:
            message = (
                f"Incorrect API key provided: {_mask(token)}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            return self._fail(401, "invalid_request_error", message, code="invalid_api_key")
        return None

    def validate(self, headers: dict[str, str], body: Any) -> Answer | None:
        if not isinstance(body, dict):
            return self._fail(400, "invalid_request_error", _BAD_JSON)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._fail(400, "invalid_request_error", "you must provide a model parameter")
        messages = body.get("messages")
        if messages is None:
            return self._fail(
                400,
                "invalid_request_error",
                "Missing required parameter: 'messages'.",
                code="missing_required_parameter",
                param="messages",
            )
        if not isinstance(messages, list):
            message = "Invalid type for 'messages': expected an array of objects."
            return self._fail(400, "invalid_request_error", message, code="invalid_type", param="messages")
        if not messages:
            message = (
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead."
            )
            return self._fail(400, "invalid_request_error", message, code="empty_array", param="messages")
        return None

    def complete(self, completion: Completion) -> Answer:
        reply, limits = completion.reply, completion.limits or _UNLIMITED
        bucket = limit_headers(limits.limit, limits.remaining, limits.reset_in)
        headers = _headers({**bucket, **reply.headers})
        if completion.request.get("stream") is True:
            return Answer(200, headers, events=_Stream(completion).events())
        return Answer(200, headers, _completion_body(completion))

    def rate_limited(self, behaviour: RateLimit, model: str, limit: int | None = None) -> Answer:
        limit = _DEFAULT_REQUEST_LIMIT if limit is None else limit
        reset_s = reset_seconds(behaviour)
        if behaviour.quota:
            body = _error_body("insufficient_quota", _QUOTA, code="insufficient_quota")
        else:
            message = (
                f"Rate limit reached for {model} in organization org-simulated on requests per min (RPM): "
                f"Limit {limit}, Used {limit}, Requested 1. Please try again in {go_duration(reset_s)}. "
                "Visit https://platform.openai.com/account/rate-limits to learn more."
            )
            body = _error_body("requests", message, code="rate_limit_exceeded")
        headers = limit_headers(limit, 0, reset_s) if behaviour.limit_headers else {}
        if behaviour.retry_after is not None:
            headers["retry-after"] = behaviour.retry_after
        return Answer(429, _headers({**headers, **behaviour.headers}), body)

    def server_error(self, behaviour: ServerError) -> Answer:
        default = _OVERLOADED if behaviour.status == 503 else _SERVER_ERROR
        return self._fail(behaviour.status, "server_error", behaviour.message or default)

    def error(self, behaviour: ErrorReply) -> Answer:
        b = behaviour
        return self._fail(b.status, b.type, b.message, b.code, b.param)

    def not_found(self, method: str, path: str) -> Answer:
        return self._fail(404, "invalid_request_error", f"Invalid URL ({method} {path})")

    def models(self, extra_model: str | None) -> Answer:
        names = [*_MODELS, *([extra_model] if extra_model and extra_model not in _MODELS else [])]
        data = [
            {"id": name, "object": "model", "created": 1715367049, "owned_by": "system"} for name in names
        ]
        return Answer(200, _headers(), {"object": "list", "data": data})


def _usage(completion: Completion) -> dict[str, Any]:
    prompt, output = completion.reply.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call_id(completion: Completion) -> str:
    call = completion.reply.tool_call
    return call.id if call is not None and call.id else random_id("call_", 24)


def _completion_body(completion: Completion) -> dict[str, Any]:
    reply = completion.reply
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_call is not None:
        arguments = orjson.dumps(reply.tool_call.arguments).decode()
        function = {"name": reply.tool_call.name, "arguments": arguments}
        message["tool_calls"] = [{"id": _tool_call_id(completion), "type": "function", "function": function}]
    return {
        "id": random_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": completion.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": openai_finish_reason(reply)}
        ],
        "usage": _usage(completion),
        "service_tier": "default",
        "system_fingerprint": "fp_sim0001",
    }


class _Stream:
    """The chunk sequence of one streamed completion, in the real API's order."""

    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        options = completion.request.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.id = random_id("chatcmpl-", 29)
        self.created = int(time.time())

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.completion.model,
            "service_tier": "default",
            "system_fingerprint": "fp_sim0001",
            "choices": choices,
        }
        if self.include_usage:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return self.chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def events(self) -> list[bytes]:
        reply, text = self.completion.reply, self.completion.text
        call = reply.tool_call
        header = None
        if call is not None:
            function = {"name": call.name, "arguments": ""}
            header = {
                "index": 0,
                "id": _tool_call_id(self.completion),
                "type": "function",
                "function": function,
            }
        events: list[bytes] = []
        if text is not None or header is None:
            events.append(self.delta({"role": "assistant", "content": "", "refusal": None}))
            events.extend(self.delta({"content": word}) for word in split_words(text or ""))
            if header is not None:
                events.append(self.delta({"tool_calls": [header]}))
        else:  # a tool call alone opens with the role and the call's header in one chunk
            events.append(
                self.delta({"role": "assistant", "content": None, "tool_calls": [header], "refusal": None})
            )
        if call is not None:
            arguments = orjson.dumps(call.arguments).decode()
            events.extend(
                self.delta({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
                for fragment in split_fragments(arguments)
            )
        events.append(self.delta({}, openai_finish_reason(reply)))
        if self.include_usage:
            events.append(self.chunk([], _usage(self.completion)))
        events.append(b"data: [DONE]\n\n")
        return events
