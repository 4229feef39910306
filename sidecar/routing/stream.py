"""The stream pipeline: upstream SSE streams, one leg after another, into one client stream.

A `StreamLeg` is one upstream stream being read. Every leg goes through the same two stages:

1. `commit` (part of the attempt, before any byte reaches the client): read until the leg's first
   content. Everything before it — an error event, an early end, a stall — is an `AttemptFailure`
   the router can fail over from.
2. `relay` (the client's stream): send what the commit converted, then pump. A failure now goes
   in-band, rendered once, here: a cut (502 "the provider's stream broke"), a stall past
   `stream_idle_timeout_secs` (504 "stalled"), an early end (502 "ended before the answer was
   complete") or the provider's own error event. The stream never ends as if it had succeeded.
   When the rule resumes streams, a break asks the router's `Resume` for the next leg — a
   continuation, committed by an ordinary attempt — and that leg is pumped by the same loop.

Legs differ only in how events become client frames, their `Emitter`: `Forwarding` (the exchange's
converter; the first leg) or `resume.Continuing` (a continuation). Per upstream read the relay
yields the frames joined: one ASGI message (and socket write) per read instead of per event, which
was a quarter of the CPU of a stream (docs/benchmarks.md).

The leg's `AttemptTrace` (telemetry) gets the first chunk and only the few events that can carry
usage or the finish reason (an event-name or substring check, no extra JSON parse per event); it is
ended by the relay when the leg ends, or by the attempt when the commit fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol

from sidecar.dialects import Dialect
from sidecar.dialects.continuation import read_delta
from sidecar.dialects.errors import render_error, render_stream_error
from sidecar.dialects.exchange_plan import Exchange, StreamConverter
from sidecar.dialects.sse import SseDecoder, SseEvent
from sidecar.dialects.stream_events import EventKind, classify_event, stream_error
from sidecar.errors import (
    ResumeRefused,
    SseFramingError,
    TranslationError,
    UpstreamError,
    UpstreamStreamError,
)
from sidecar.providers.classify import Outcome, ProviderError, classify
from sidecar.providers.http import UpstreamResponse
from sidecar.routing.events import AttemptTrace
from sidecar.routing.policy import AttemptFailure
from sidecar.routing.resume import SentLedger
from sidecar.routing.strategies import Candidate

log = logging.getLogger("detour.stream")


class StreamCounters(Protocol):
    malformed_events: int
    timeouts: int


class Emitter(Protocol):
    """Turns one leg's upstream events into client frames."""

    committed: bool  # the client may get this leg's frames: failures now go in-band
    complete: bool  # the provider finished its answer
    ledger: SentLedger | None  # the text the client has, kept when the stream may be resumed

    def content(self, event: SseEvent, kind: EventKind) -> list[bytes]:
        """Frames for any event but an error; raises `TranslationError` for one it cannot read."""

    def error(self, event: SseEvent) -> list[bytes]:
        """Frames for the provider's error event after the commit."""

    def finish(self) -> list[bytes]:
        """The frames that close a complete stream."""


class Forwarding:
    """The first leg's emitter: the exchange's stream converter (a passthrough within a dialect)."""

    __slots__ = ("_converter", "_dialect", "committed", "complete", "ledger")

    def __init__(self, converter: StreamConverter, dialect: Dialect, ledger: SentLedger | None) -> None:
        self._converter = converter
        self._dialect = dialect
        self.ledger = ledger
        self.committed = False
        self.complete = False

    def content(self, event: SseEvent, kind: EventKind) -> list[bytes]:
        if kind is not EventKind.PREAMBLE:
            self.committed = True
            if kind is EventKind.FINISH or kind is EventKind.DONE:
                self.complete = True
        if self.ledger is not None:
            self.ledger.add(read_delta(self._dialect, event))
        return self._converter.feed(event)

    def error(self, event: SseEvent) -> list[bytes]:
        return self._converter.feed(event)

    def finish(self) -> list[bytes]:
        return self._converter.finish()


def forwarding(exchange: Exchange, dialect: Dialect, resumable: bool) -> Callable[[], Emitter]:
    """A fresh `Forwarding` per attempt (a converter keeps state), with a ledger when it may resume."""

    def emitter() -> Emitter:
        return Forwarding(exchange.new_stream_converter(), dialect, SentLedger() if resumable else None)

    return emitter


# Asks the router for the next leg after `broken` broke with `outcome`: None when none can continue.
Resume = Callable[[SentLedger, Candidate, Outcome], Awaitable["StreamLeg | None"]]


class StreamLeg:
    """One upstream stream being read: from its response through the decoder and the emitter."""

    __slots__ = ("_chunks", "_deadline", "_ended", "candidate", "counters", "decoder", "dialect",
                 "early_error", "emitter", "failed", "held", "held_error", "idle_timeout_s",
                 "response", "trace")  # fmt: skip

    def __init__(
        self,
        response: UpstreamResponse,
        candidate: Candidate,
        dialect: Dialect,
        emitter: Emitter,
        counters: StreamCounters,
        idle_timeout_s: float | None,
        trace: AttemptTrace | None,
    ) -> None:
        self.response = response
        self.candidate = candidate
        self.dialect = dialect  # the provider's
        self.emitter = emitter
        self.counters = counters
        self.idle_timeout_s = idle_timeout_s
        self.trace = trace
        self.decoder = SseDecoder()
        self.held: list[bytes] = []  # frames converted before the commit, sent first
        self.failed = False  # the provider reported an error in-band after the commit
        self.held_error: list[bytes] = []  # that error, held back while a resume may replace it
        self.early_error: SseEvent | None = None  # an error event before the commit
        self._chunks = response.iter_bytes().__aiter__()
        self._ended = False
        # When the idle timeout runs out, in the event loop's clock; None: from the next read's start.
        self._deadline: float | None = None

    async def read(self) -> list[SseEvent] | None:
        """The events of the next upstream read (at the end: what the decoder still held), then
        None. TimeoutError when the stream stalls past the idle timeout.

        The idle timeout bounds the gap between complete events, not between reads: its deadline
        is set when a read starts after a read that completed an event (or first), and a read that
        brings bytes but no complete event leaves it where it was, so an upstream dribbling bytes
        cannot hold the stream open. The time the relay spends handing the frames to the client
        does not count against the upstream. Clock reads: only those `asyncio.timeout` always made."""
        if self._ended:
            return None
        try:
            if self.idle_timeout_s is None:
                chunk = await self._chunks.__anext__()
            else:
                if self._deadline is None:  # a new gap: `timeout` reads the clock, as it always did
                    idle = asyncio.timeout(self.idle_timeout_s)
                    self._deadline = idle.when()
                else:  # the same gap: no clock read of our own
                    idle = asyncio.timeout_at(self._deadline)
                async with idle:
                    chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._ended = True
            return self.decoder.flush()
        try:
            events = self.decoder.feed(chunk)
        except SseFramingError as exc:
            # The decoder only frames; for routing, bytes that are not SSE are a broken upstream.
            raise UpstreamStreamError(str(exc)) from exc
        if events:
            self._deadline = None  # a new gap begins with the next read
        return events

    def convert(self, events: list[SseEvent]) -> list[bytes]:
        """Client frames for these events. Malformed events are dropped and counted; an error event
        before the commit stops here as `early_error`, one after it as `failed`: either way the
        events behind it in the same read are not passed on, since nothing follows an error."""
        frames: list[bytes] = []
        emitter = self.emitter
        for event in events:
            kind = classify_event(self.dialect, event)
            if kind is EventKind.MALFORMED:
                self.counters.malformed_events += 1
                continue
            if kind is EventKind.ERROR and not emitter.committed:
                self.early_error = event
                return frames
            if self.trace is not None and _may_carry_usage(self.dialect, event, kind):
                self.trace.stream_event(event)
            if kind is EventKind.ERROR:
                self.failed = True
                if emitter.ledger is None:
                    frames.extend(emitter.error(event))
                else:
                    self.held_error = emitter.error(event)  # sent only if no resume succeeds
                return frames
            try:
                frames.extend(emitter.content(event, kind))
            except TranslationError:
                self.counters.malformed_events += 1  # unreadable for the translator: dropped, like bad SSE
        return frames

    async def close(self, outcome: Outcome | None) -> None:
        """Release the connection and end the trace; `outcome` None: the client left first."""
        await self.response.close()
        if self.trace is not None:
            if outcome is None:
                self.trace.end(self.response.status, "cancelled")
            else:
                self.trace.end(self.response.status, None if outcome is Outcome.OK else outcome.value)


async def commit(leg: StreamLeg) -> AttemptFailure | None:
    """Read until the first content; a failure before it is an ordinary attempt failure (and the
    connection is released at once, or the provider's in-flight count never drops)."""
    handed_over = False
    try:
        first = True
        while not leg.emitter.committed:
            events = await leg.read()
            if events is None:
                return AttemptFailure(Outcome.STREAM_ERROR)
            if first and leg.trace is not None:
                leg.trace.first_chunk()
            first = False
            leg.held.extend(leg.convert(events))
            if leg.early_error is not None:
                return _failure_from_stream_event(leg.dialect, leg.early_error)
        handed_over = True
    finally:
        if not handed_over:
            await leg.response.close()
    return None


def _failure_from_stream_event(dialect: Dialect, event: SseEvent) -> AttemptFailure:
    """An error event before any content is a failure like an HTTP error; it gets the body the
    provider would have sent as one, so a client error reaches the client through the usual path."""
    error = stream_error(dialect, event)
    outcome = classify(dialect, error.status, ProviderError(error.error_type, None, error.message))
    body = render_error(dialect, error.status, error.message, error_type=error.error_type)
    return AttemptFailure(outcome, error.status, body=body)


async def relay(
    leg: StreamLeg, client_dialect: Dialect, resume: Resume | None
) -> AsyncGenerator[bytes, None]:
    """The client's stream: each leg's frames, until one completes or a break cannot be resumed."""
    while True:
        error: list[bytes] = []
        outcome: Outcome | None = None  # how the leg ended; None while it has not (the client left)
        try:
            if leg.held:
                yield b"".join(leg.held)
                leg.held.clear()
            try:
                while not leg.failed:
                    events = await leg.read()
                    if events is None:
                        break
                    if frames := leg.convert(events):
                        yield b"".join(frames)
            except (UpstreamError, ResumeRefused) as exc:
                outcome = Outcome.STREAM_ERROR
                log.warning("stream from upstream broke after content was sent: %s", exc)
                error = [render_stream_error(client_dialect, 502, f"the provider's stream broke: {exc}")]
            except TimeoutError:
                outcome = Outcome.TIMEOUT
                leg.counters.timeouts += 1
                log.warning(
                    "stream from upstream stalled for %s s after content was sent", leg.idle_timeout_s
                )
                message = "the provider's stream stalled"
                # OpenAI has no error type for this, so say "timeout"; Anthropic's table has one.
                kind = "timeout" if client_dialect is Dialect.OPENAI else None
                error = [render_stream_error(client_dialect, 504, message, error_type=kind)]
            else:
                if leg.emitter.complete and not leg.failed:
                    outcome = Outcome.OK
                    if frames := leg.emitter.finish():
                        yield b"".join(frames)
                    return
                outcome = Outcome.STREAM_ERROR
                message = "the provider's stream ended before the answer was complete"
                ended_early = [] if leg.failed else [render_stream_error(client_dialect, 502, message)]
                error = leg.held_error or ended_early
        finally:
            await leg.close(outcome)
        ledger = leg.emitter.ledger
        if resume is not None and ledger is not None and ledger.plain:
            following = await resume(ledger, leg.candidate, outcome or Outcome.STREAM_ERROR)
            if following is not None:
                leg = following
                continue
        if error:
            yield b"".join(error)
        return


_ANTHROPIC_USAGE_EVENTS = frozenset({"message_start", "message_delta"})


def _may_carry_usage(dialect: Dialect, event: SseEvent, kind: EventKind) -> bool:
    """Anthropic: message_start (model, input tokens) and message_delta (stop reason, output
    tokens). OpenAI: the finish chunk and the usage chunk (other chunks say `"usage":null`)."""
    if dialect is Dialect.ANTHROPIC:
        return event.event in _ANTHROPIC_USAGE_EVENTS
    return kind is EventKind.FINISH or '"usage":{' in event.data
