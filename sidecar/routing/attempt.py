"""One attempt: send a request to one candidate and say what came of it.

A non-streaming attempt ends when its whole body is read. A streaming attempt ends at the commit
point of SPEC §3 — the first upstream content event — so everything before it (429, 5xx, an error
event, a silent provider, a stream that closes early) is still a failure the router can fail over
from. After the commit point, `_relay` forwards events and reports any failure in-band, in the
client's dialect; the stream never ends as if it had succeeded. It yields the frames of one upstream
read joined, whole frames only: one ASGI message (and socket write) per read instead of per event,
which was a quarter of the CPU of a stream (docs/benchmarks.md).

An optional `AttemptTrace` (telemetry) sees the attempt: it gets the upstream body, the stream's
first chunk and only the few events that can carry usage or the finish reason (a substring or
event-name check, no extra JSON parse per event), and is ended here or, for a committed stream,
by `_relay` when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.dialects import Dialect
from sidecar.dialects.adapt import Exchange, StreamConverter
from sidecar.dialects.continuation import read_delta
from sidecar.dialects.errors import render_error, render_stream_error
from sidecar.dialects.sse import SseDecoder, SseEvent
from sidecar.dialects.stream_events import EventKind, classify_event, stream_error
from sidecar.errors import TranslationError, UpstreamConnectError, UpstreamError, UpstreamTimeout
from sidecar.providers.classify import Outcome, ProviderError, classify, parse_error_body
from sidecar.providers.client import ClientHeaders, ProviderClient
from sidecar.providers.http import UpstreamResponse
from sidecar.routing.events import AttemptTrace
from sidecar.routing.exchange import RoutedResponse
from sidecar.routing.resume import Resumer, SentLedger
from sidecar.routing.strategies import Candidate

log = logging.getLogger("detour.attempt")

_FORWARDED_RESPONSE_HEADERS = ("x-request-id", "request-id", "openai-processing-ms")


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    reason: str  # rate_limit | quota | server_error | timeout | connect_error | stream_error | ...
    outcome: Outcome | None = None
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: ProviderError | None = None
    body: bytes = b""


_REASONS = {
    Outcome.RATE_LIMITED: "rate_limit",
    Outcome.QUOTA_EXHAUSTED: "quota",
    Outcome.SERVER_ERROR: "server_error",
    Outcome.CONTEXT_LENGTH: "context_length",
    Outcome.CLIENT_ERROR: "client_error",
}


async def run_attempt(
    client: ProviderClient,
    candidate: Candidate,
    exchange: Exchange,
    *,
    client_dialect: Dialect,
    stream: bool,
    headers_in: ClientHeaders,
    counters: StreamCounters,
    resumer: Resumer | None = None,
    trace: AttemptTrace | None = None,
) -> RoutedResponse | AttemptFailure:
    """`timeout_secs` bounds a whole non-streaming attempt; a stream is bounded until its first
    content event by `first_token_timeout_secs` (else `timeout_secs`), and between events by
    `stream_idle_timeout_secs`. The `trace` is ended here, except a committed stream's: its relay
    ends it with the stream."""
    config = client.config
    deadline = config.first_token_timeout_secs if stream and config.first_token_timeout_secs else None
    result: RoutedResponse | AttemptFailure
    try:
        async with asyncio.timeout(deadline or config.timeout_secs):
            extra = trace.upstream_headers if trace is not None else ()
            response = await client.send(exchange.upstream_body, headers_in, extra)
            if response.status >= 400:
                result = await _failure_from_status(client.dialect, response)
            elif not stream:
                body = await response.read()
                if trace is not None:
                    trace.response_body(body)
                if exchange.convert_response is not None:
                    body = exchange.convert_response(body)
                result = _whole(response, candidate, body)
            else:
                state = _StreamState(
                    SseDecoder(),
                    exchange.new_stream_converter(),
                    [],
                    counters,
                    config.stream_idle_timeout_secs,
                )
                if resumer is not None:
                    state.resumer, state.ledger = resumer, SentLedger()
                state.trace = trace
                result = await _commit_stream(response, client.dialect, client_dialect, candidate, state)
    except UpstreamTimeout:
        result = AttemptFailure("timeout")
    except TimeoutError:
        result = AttemptFailure("timeout")
    except UpstreamConnectError as exc:
        log.info("provider %s: %s", candidate.provider_id, exc)
        result = AttemptFailure("connect_error")
    except UpstreamError as exc:
        log.info("provider %s: %s", candidate.provider_id, exc)
        result = AttemptFailure("stream_error")
    except TranslationError as exc:
        log.warning("provider %s: answer could not be translated: %s", candidate.provider_id, exc)
        result = AttemptFailure("translation_error")
    except BaseException:
        if trace is not None:
            trace.end(None, "cancelled")
        raise
    if trace is not None:
        if isinstance(result, AttemptFailure):
            # error.type: the HTTP status when there was one ("429"), else the reason ("timeout")
            trace.end(result.status, str(result.status) if result.status is not None else result.reason)
        elif result.stream is None:
            trace.end(result.status, None)
    return result


async def _failure_from_status(dialect: Dialect, response: UpstreamResponse) -> AttemptFailure:
    body = await response.read()
    error = parse_error_body(body)
    outcome = classify(dialect, response.status, error)
    return AttemptFailure(_REASONS[outcome], outcome, response.status, response.headers, error, body)


def _whole(response: UpstreamResponse, candidate: Candidate, body: bytes) -> RoutedResponse:
    return RoutedResponse(
        status=response.status,
        content_type=response.headers.get("content-type", "application/json"),
        provider_id=candidate.provider_id,
        model=candidate.model,
        body=body,
        headers=_forwarded(response.headers),
    )


def _forwarded(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(name, headers[name]) for name in _FORWARDED_RESPONSE_HEADERS if name in headers]


class StreamCounters(Protocol):
    malformed_events: int
    timeouts: int


@dataclass(slots=True)
class _StreamState:
    decoder: SseDecoder
    converter: StreamConverter
    held: list[bytes]
    counters: StreamCounters
    idle_timeout_s: float | None
    resumer: Resumer | None = None
    ledger: SentLedger | None = None  # kept only when the stream may be resumed
    trace: AttemptTrace | None = None
    complete: bool = False  # the provider finished its answer (finish_reason / message_delta / done)
    failed: bool = False  # the provider reported an error in-band; it was forwarded to the client
    held_error: list[bytes] = field(default_factory=list)  # an in-band error held back for a resume

    async def next_chunk(self, chunks: AsyncIterator[bytes]) -> bytes:
        """The next upstream chunk; TimeoutError when the stream stalls past the idle timeout."""
        if self.idle_timeout_s is None:
            return await chunks.__anext__()
        async with asyncio.timeout(self.idle_timeout_s):
            return await chunks.__anext__()


async def _commit_stream(
    response: UpstreamResponse,
    provider_dialect: Dialect,
    client_dialect: Dialect,
    candidate: Candidate,
    state: _StreamState,
) -> RoutedResponse | AttemptFailure:
    """Read until the first content event; a failure before it is an ordinary attempt failure."""
    chunks = response.iter_bytes().__aiter__()
    committed = False
    first = True
    handed_over = False  # once the relay owns the response, closing it is the relay's job
    try:
        while not committed:
            try:
                chunk = await state.next_chunk(chunks)
            except StopAsyncIteration:
                events = state.decoder.flush()
                if not events:
                    return AttemptFailure("stream_error")
            else:
                if first and state.trace is not None:
                    state.trace.first_chunk()
                first = False
                events = state.decoder.feed(chunk)
            remaining: list[SseEvent] = []
            for index, event in enumerate(events):
                if committed:
                    remaining = events[index:]
                    break
                kind = classify_event(provider_dialect, event)
                if kind is EventKind.ERROR:
                    return _failure_from_stream_event(provider_dialect, event)
                if kind is EventKind.MALFORMED:
                    state.counters.malformed_events += 1
                    continue
                if state.trace is not None and _may_carry_usage(provider_dialect, event, kind):
                    state.trace.stream_event(event)
                state.held.extend(_convert(state, event))
                if state.ledger is not None:
                    state.ledger.add(read_delta(provider_dialect, event))
                if kind is not EventKind.PREAMBLE:
                    committed = True
                    state.complete = kind in (EventKind.FINISH, EventKind.DONE)
            state.held.extend(_forward(state, provider_dialect, remaining))
        handed_over = True
    finally:
        if not handed_over:
            # A failure before the first content (an error event, an early end, a timeout) must
            # release the connection now, or the provider's in-flight count never drops.
            await response.close()
    return RoutedResponse(
        status=200,
        content_type="text/event-stream",
        provider_id=candidate.provider_id,
        model=candidate.model,
        stream=_relay(response, chunks, state, provider_dialect, client_dialect),
        headers=_forwarded(response.headers),
        release=response.close,
    )


def _failure_from_stream_event(dialect: Dialect, event: SseEvent) -> AttemptFailure:
    """An error event before any content is a failure like an HTTP error; it gets the body the
    provider would have sent as one, so a client error reaches the client through the usual path."""
    error = stream_error(dialect, event)
    reason = ProviderError(error.error_type, None, error.message)
    outcome = classify(dialect, error.status, reason)
    body = render_error(dialect, error.status, error.message, error_type=error.error_type)
    return AttemptFailure(_REASONS[outcome], outcome, error.status, {}, reason, body)


def _forward(state: _StreamState, dialect: Dialect, events: list[SseEvent]) -> list[bytes]:
    frames: list[bytes] = []
    for event in events:
        kind = classify_event(dialect, event)
        if kind is EventKind.MALFORMED:
            state.counters.malformed_events += 1
            continue
        if state.trace is not None and _may_carry_usage(dialect, event, kind):
            state.trace.stream_event(event)
        if kind in (EventKind.FINISH, EventKind.DONE):
            state.complete = True
        elif kind is EventKind.ERROR:
            state.failed = True
            if state.resumer is not None:
                state.held_error = _convert(state, event)  # sent only if no resume succeeds
                continue
        if state.ledger is not None:
            state.ledger.add(read_delta(dialect, event))
        frames.extend(_convert(state, event))
    return frames


_ANTHROPIC_USAGE_EVENTS = frozenset({"message_start", "message_delta"})


def _may_carry_usage(dialect: Dialect, event: SseEvent, kind: EventKind) -> bool:
    """Anthropic: message_start (model, input tokens) and message_delta (stop reason, output
    tokens). OpenAI: the finish chunk and the usage chunk (other chunks say `"usage":null`)."""
    if dialect is Dialect.ANTHROPIC:
        return event.event in _ANTHROPIC_USAGE_EVENTS
    return kind is EventKind.FINISH or '"usage":{' in event.data


def _convert(state: _StreamState, event: SseEvent) -> list[bytes]:
    try:
        return state.converter.feed(event)
    except TranslationError:
        state.counters.malformed_events += 1  # unreadable for the translator: dropped, like bad SSE
        return []


async def _relay(
    response: UpstreamResponse,
    chunks: AsyncIterator[bytes],
    state: _StreamState,
    provider_dialect: Dialect,
    client_dialect: Dialect,
) -> AsyncIterator[bytes]:
    error: list[bytes]
    frames: list[bytes]
    outcome: str | None = "cancelled"  # what the attempt's trace reports unless the stream ends
    try:
        if state.held:
            yield b"".join(state.held)
        state.held.clear()
        try:
            while not state.failed:
                try:
                    chunk = await state.next_chunk(chunks)
                except StopAsyncIteration:
                    break
                if frames := _forward(state, provider_dialect, state.decoder.feed(chunk)):
                    yield b"".join(frames)
            if frames := _forward(state, provider_dialect, state.decoder.flush()):
                yield b"".join(frames)
        except UpstreamError as exc:
            outcome = "stream_error"
            log.warning("stream from upstream broke after content was sent: %s", exc)
            error = [render_stream_error(client_dialect, 502, f"the provider's stream broke: {exc}")]
        except TimeoutError:
            outcome = "timeout"
            state.counters.timeouts += 1
            log.warning("stream from upstream stalled for %s s after content was sent", state.idle_timeout_s)
            message = "the provider's stream stalled"
            error = [render_stream_error(client_dialect, 504, message, error_type="timeout")]
        else:
            if state.complete and not state.failed:
                outcome = None
                if frames := state.converter.finish():
                    yield b"".join(frames)
                return
            outcome = "stream_error"
            message = "the provider's stream ended before the answer was complete"
            ended_early = [] if state.failed else [render_stream_error(client_dialect, 502, message)]
            error = state.held_error or ended_early
    finally:
        await response.close()
        if state.trace is not None:
            state.trace.end(response.status, outcome)
    if state.resumer is not None and state.ledger is not None and state.ledger.plain:
        continuation = await state.resumer(state.ledger)
        if continuation is not None:
            # aclosing: a client that leaves mid-continuation closes its upstream response now.
            async with contextlib.aclosing(continuation):  # type: ignore[type-var]
                async for frame in continuation:
                    yield frame
            return
    if error:
        yield b"".join(error)
