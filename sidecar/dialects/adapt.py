"""How one request is carried to a provider and back: same dialect passes through, otherwise it is
translated (request, response, stream and errors).

`plan_exchange` is pure and decides everything the attempt needs before any byte is sent, so a
request that cannot be expressed for a provider is skipped without an upstream round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.sse import SseEvent
from sidecar.dialects.translate_requests import (
    anthropic_to_openai_request,
    openai_to_anthropic_request,
    unsupported_anthropic_features,
    unsupported_openai_features,
)
from sidecar.dialects.translate_responses import (
    anthropic_error_to_openai,
    anthropic_to_openai_response,
    openai_error_to_anthropic,
    openai_to_anthropic_response,
)
from sidecar.dialects.translate_streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from sidecar.errors import TranslationError

DONE_FRAME = b"data: [DONE]\n\n"
MESSAGE_STOP_FRAME = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class StreamConverter(Protocol):
    """Upstream SSE events in, client SSE frames out; `finish` closes a complete stream once."""

    def feed(self, event: SseEvent) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


class PassthroughStream:
    """Same dialect: forward each event's own bytes; add the terminator if the provider left it out.

    `strip_usage` drops the usage-only chunk of an OpenAI stream whose usage Detour asked for on its
    own account (the client did not ask for it, so it must not see it)."""

    __slots__ = ("_dialect", "_strip_usage", "_terminated")

    def __init__(self, dialect: Dialect, *, strip_usage: bool = False) -> None:
        self._dialect = dialect
        self._strip_usage = strip_usage
        self._terminated = False

    def feed(self, event: SseEvent) -> list[bytes]:
        data = event.data
        if data == "[DONE]" or event.event == "message_stop":
            self._terminated = True
        elif self._strip_usage and '"usage":{' in data and _is_usage_only(data):
            return []
        return [event.encode()]

    def finish(self) -> list[bytes]:
        if self._terminated:
            return []
        self._terminated = True
        return [MESSAGE_STOP_FRAME if self._dialect is Dialect.ANTHROPIC else DONE_FRAME]


@dataclass(frozen=True, slots=True)
class Exchange:
    upstream_body: bytes
    # None means the upstream bytes go to the client unchanged.
    convert_response: Callable[[bytes], bytes] | None
    convert_error: Callable[[int, bytes], tuple[int, bytes]] | None
    new_stream_converter: Callable[[], StreamConverter]


def plan_exchange(
    client: Dialect,
    provider: Dialect,
    *,
    body: dict[str, Any],
    raw: bytes,
    requested_model: str,
    upstream_model: str,
    default_max_tokens: int,
    now: float,
    stream: bool = False,
) -> Exchange:
    """Raises TranslationError when the request cannot be expressed for this provider (the
    candidate is then skipped; the documented rules are in `translate_requests`)."""
    if client is provider:
        if client is Dialect.OPENAI and stream and not _asks_for_usage(body):
            # Streams report usage only when asked; Detour asks for its own accounting.
            upstream = {
                **body,
                "model": upstream_model,
                "stream_options": {**_options(body), "include_usage": True},
            }
            return Exchange(
                orjson.dumps(upstream), None, None, lambda: PassthroughStream(client, strip_usage=True)
            )
        upstream_body = raw if upstream_model == requested_model else _with_model(body, upstream_model)
        return Exchange(upstream_body, None, None, lambda: PassthroughStream(client))
    if client is Dialect.OPENAI:
        return _openai_client_to_anthropic(body, upstream_model, default_max_tokens, int(now))
    return _anthropic_client_to_openai(body, upstream_model, requested_model)


def _openai_client_to_anthropic(
    body: dict[str, Any], upstream_model: str, max_tokens: int, created: int
) -> Exchange:
    reason = unsupported_openai_features(body)
    if reason is not None:
        raise TranslationError(reason)
    upstream = openai_to_anthropic_request(body, upstream_model=upstream_model, default_max_tokens=max_tokens)
    include_usage = _asks_for_usage(body)

    def convert_response(raw: bytes) -> bytes:
        return orjson.dumps(anthropic_to_openai_response(_loads_object(raw), created=created))

    def convert_error(status: int, raw: bytes) -> tuple[int, bytes]:
        new_status, payload = anthropic_error_to_openai(status, raw)
        return new_status, orjson.dumps(payload)

    return Exchange(
        orjson.dumps(upstream),
        convert_response,
        convert_error,
        lambda: AnthropicToOpenAIStream(created=created, include_usage=include_usage),
    )


def _anthropic_client_to_openai(body: dict[str, Any], upstream_model: str, requested_model: str) -> Exchange:
    reason = unsupported_anthropic_features(body)
    if reason is not None:
        raise TranslationError(reason)
    upstream = anthropic_to_openai_request(body, upstream_model=upstream_model)

    def convert_response(raw: bytes) -> bytes:
        return orjson.dumps(openai_to_anthropic_response(_loads_object(raw)))

    def convert_error(status: int, raw: bytes) -> tuple[int, bytes]:
        new_status, payload = openai_error_to_anthropic(status, raw)
        return new_status, orjson.dumps(payload)

    return Exchange(
        orjson.dumps(upstream),
        convert_response,
        convert_error,
        lambda: OpenAIToAnthropicStream(requested_model=requested_model),
    )


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options = body.get("stream_options")
    return options if isinstance(options, dict) else {}


def _asks_for_usage(body: dict[str, Any]) -> bool:
    return _options(body).get("include_usage") is True


def _is_usage_only(data: str) -> bool:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == []


def _loads_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"the provider's answer is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise TranslationError("the provider's answer is not a JSON object")
    return payload


def _with_model(body: dict[str, Any], model: str) -> bytes:
    return orjson.dumps({**body, "model": model})
