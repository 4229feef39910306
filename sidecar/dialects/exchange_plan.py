"""Per candidate, how the client's request is carried to that provider and its answer back: the body
passes through when the provider speaks the client's dialect, otherwise it is translated.

`plan_exchange` is pure and decides everything an attempt needs before any byte is sent — the
upstream body and the converters for the answer, the error and the stream — so a request that
cannot be expressed for a provider is skipped without an upstream round trip:

- same dialect: the body goes up as sent (re-serialised only when the model is mapped) and the
  answer comes back as it came (`PassthroughStream`), except that an OpenAI stream whose client did
  not ask for usage asks for it anyway, for Detour's own accounting, and that usage chunk is not
  passed on; a stream that ends without its terminator gets one.
- OpenAI client, Anthropic provider: `openai_to_anthropic_request` (the candidate is ineligible
  when `unsupported_openai_features` gives a reason); back through `anthropic_to_openai_response`,
  `anthropic_to_openai_stream` and `upstream_errors.anthropic_error_to_openai`.
- Anthropic client, OpenAI provider: `anthropic_to_openai_request` (ineligible when
  `unsupported_anthropic_features` gives a reason); back through `openai_to_anthropic_response`,
  `openai_to_anthropic_stream` and `upstream_errors.openai_error_to_anthropic`.

Whenever the body is written again rather than passed through (a mapped model, the usage option, a
translation), a request nested deeper than orjson writes (`json_out`) is refused with a
`TranslationError` like any request the provider cannot be sent: the candidate is skipped, a
candidate that passes the bytes through may still serve, and when none can the client gets a 400
naming the depth (docs/architecture.md §3). A 500 would blame Detour for the client's body; a 400
at once would refuse a body some candidate can carry. An answer nested too deeply to write back is a
`TranslationError` too, and the attempt fails over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.anthropic_to_openai_request import (
    anthropic_to_openai_request,
    unsupported_anthropic_features,
)
from sidecar.dialects.anthropic_to_openai_response import anthropic_to_openai_response
from sidecar.dialects.anthropic_to_openai_stream import AnthropicToOpenAIStream
from sidecar.dialects.frames import DONE_FRAME, MESSAGE_STOP_FRAME
from sidecar.dialects.json_out import too_deep, write_json
from sidecar.dialects.openai_to_anthropic_request import (
    openai_to_anthropic_request,
    unsupported_openai_features,
)
from sidecar.dialects.openai_to_anthropic_response import openai_to_anthropic_response
from sidecar.dialects.openai_to_anthropic_stream import OpenAIToAnthropicStream
from sidecar.dialects.sse import SseEvent
from sidecar.dialects.upstream_errors import anthropic_error_to_openai, openai_error_to_anthropic
from sidecar.errors import TranslationError

_REQUEST = "the request body"
_ANSWER = "the provider's answer"


class StreamConverter(Protocol):
    """Upstream SSE events in, client SSE frames out, one complete frame per item; `finish` is
    called once the upstream stream ended (or was cut), is idempotent, and never invents an ending."""

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
    # The client's body from the provider's parsed answer; None: the upstream bytes go unchanged.
    convert_response: Callable[[dict[str, Any]], bytes] | None
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
    candidate is then skipped; the rules are in the request translators' docstrings)."""
    if client is provider:
        if client is Dialect.OPENAI and stream and not _asks_for_usage(body):
            # Streams report usage only when asked; Detour asks for its own accounting.
            upstream = {
                **body,
                "model": upstream_model,
                "stream_options": {**_options(body), "include_usage": True},
            }
            return Exchange(
                write_json(upstream, _REQUEST),
                None,
                None,
                lambda: PassthroughStream(client, strip_usage=True),
            )
        if upstream_model == requested_model and not _may_read_differently(raw):
            upstream_body = raw
        else:
            upstream_body = _with_model(body, upstream_model)
        return Exchange(upstream_body, None, None, lambda: PassthroughStream(client))
    try:
        if client is Dialect.OPENAI:
            return _openai_client_to_anthropic(body, upstream_model, default_max_tokens, int(now))
        return _anthropic_client_to_openai(body, upstream_model, requested_model)
    except RecursionError as exc:
        # A refusal's message printed a value nested past Python's recursion limit (`json_out`).
        raise too_deep(_REQUEST) from exc


def _openai_client_to_anthropic(
    body: dict[str, Any], upstream_model: str, max_tokens: int, created: int
) -> Exchange:
    reason = unsupported_openai_features(body)
    if reason is not None:
        raise TranslationError(reason)
    upstream = openai_to_anthropic_request(body, upstream_model=upstream_model, default_max_tokens=max_tokens)
    include_usage = _asks_for_usage(body)

    def convert_response(answer: dict[str, Any]) -> bytes:
        return write_json(anthropic_to_openai_response(answer, created=created), _ANSWER)

    def convert_error(status: int, raw: bytes) -> tuple[int, bytes]:
        new_status, payload = anthropic_error_to_openai(status, raw)
        return new_status, orjson.dumps(payload)

    return Exchange(
        write_json(upstream, _REQUEST),
        convert_response,
        convert_error,
        lambda: AnthropicToOpenAIStream(created=created, include_usage=include_usage),
    )


def _anthropic_client_to_openai(body: dict[str, Any], upstream_model: str, requested_model: str) -> Exchange:
    reason = unsupported_anthropic_features(body)
    if reason is not None:
        raise TranslationError(reason)
    upstream = anthropic_to_openai_request(body, upstream_model=upstream_model)

    def convert_response(answer: dict[str, Any]) -> bytes:
        return write_json(openai_to_anthropic_response(answer), _ANSWER)

    def convert_error(status: int, raw: bytes) -> tuple[int, bytes]:
        new_status, payload = openai_error_to_anthropic(status, raw)
        return new_status, orjson.dumps(payload)

    return Exchange(
        write_json(upstream, _REQUEST),
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


def _may_read_differently(raw: bytes) -> bool:
    """Whether a provider might read another `model` or `stream` from these bytes than Detour did.

    JSON parsers disagree on repeated keys (Detour's keeps the last; others keep the first or
    refuse), and a key may be spelled with escapes (`"mod\\u0065l"`). When the bytes could hold
    either, the provider is sent Detour's own serialization of what it parsed, so it reads exactly
    what was routed on (docs/architecture.md §4). The scans run at C speed; the re-serialization is
    paid only by bodies that need it (and by ASCII-escaped non-ASCII text, which is common but cheap).
    """
    return raw.count(b'"model"') != 1 or raw.count(b'"stream"') > 1 or b"\\u" in raw


def _with_model(body: dict[str, Any], model: str) -> bytes:
    return write_json({**body, "model": model}, _REQUEST)
