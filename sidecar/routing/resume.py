"""Resuming a stream that broke after content reached the client (`resume_streams: true`).

The first stream's emitter keeps a `SentLedger` of the text the client already has. When the stream
breaks, the relay asks the router for the next candidate, which is asked to continue: with an
assistant prefill if the provider `supports_prefill`, otherwise from scratch (`continuation_request`).
That request is an ordinary attempt (same timeouts, retries, limits, circuits, trace) whose stream is
read by a `Continuing` emitter instead of the exchange's converter: it passes on only what goes
beyond the text already sent, and only if the new answer begins with exactly that text. Its commit
point is the first new text, so a continuation that fails early costs the client nothing but the
original error; a refusal (any 4xx, a diverging or non-text answer: `ResumeRefused`, outcome
`REFUSED`) stops resuming and the original error stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.dialects import Dialect
from sidecar.dialects.continuation import (
    ContinuationFrames,
    PrefixGate,
    TextDelta,
    prefill_request,
    read_delta,
)
from sidecar.dialects.errors import render_stream_error
from sidecar.dialects.sse import SseEvent
from sidecar.dialects.stream_events import EventKind, stream_error
from sidecar.errors import ResumeRefused
from sidecar.providers.client import ProviderClient


@dataclass(slots=True)
class SentLedger:
    """The answer text the client has received, kept only for rules that resume streams."""

    parts: list[str] = field(default_factory=list)
    plain: bool = True
    block_index: int = 0

    def add(self, delta: TextDelta) -> None:
        if delta.text:
            self.parts.append(delta.text)
        self.plain = self.plain and delta.plain
        if delta.block_index is not None:
            self.block_index = delta.block_index

    @property
    def text(self) -> str:
        return "".join(self.parts)


def continuation_request(
    client: ProviderClient, upstream_body: bytes, ledger: SentLedger
) -> tuple[bytes, str]:
    """(the body to send, the text its answer must begin with before anything new is passed on)."""
    sent = ledger.text
    if client.config.supports_prefill:
        # The answer continues after the prefill; it repeats only what the prefill had to leave out.
        return prefill_request(client.dialect, upstream_body, sent)
    return upstream_body, sent


class Continuing:
    """The `Emitter` of a continuation: new text as more deltas of the message the client is
    reading (`ContinuationFrames`), recorded in the ledger so a later break may resume again."""

    __slots__ = ("_client", "_finish", "_frames", "_gate", "_provider", "committed", "complete", "ledger")

    def __init__(
        self,
        provider: Dialect,
        client: Dialect,
        expected: str,
        frames: ContinuationFrames,
        ledger: SentLedger,
    ) -> None:
        self._provider = provider
        self._client = client
        self._gate = PrefixGate(expected)
        self._frames = frames
        self._finish: str | None = None
        self.ledger: SentLedger | None = ledger
        self.committed = False
        self.complete = False

    def content(self, event: SseEvent, kind: EventKind) -> list[bytes]:
        delta = read_delta(self._provider, event)
        if not delta.plain:
            raise ResumeRefused("the continuation is not plain text")
        out: list[bytes] = []
        if delta.text:
            new = self._gate.feed(delta.text)
            if new is None:
                raise ResumeRefused("the new answer does not begin with the text already sent")
            if new:
                self.committed = True
                if self.ledger is not None:
                    self.ledger.add(TextDelta(new))
                out.append(self._frames.text(new))
        if delta.finish is not None:
            self._finish = delta.finish
            self.committed = self.complete = True
        return out

    def error(self, event: SseEvent) -> list[bytes]:
        error = stream_error(self._provider, event)
        # The provider's own error type means something only to a client of its dialect.
        error_type = error.error_type if self._provider is self._client else None
        return [render_stream_error(self._client, error.status, error.message, error_type=error_type)]

    def finish(self) -> list[bytes]:
        return self._frames.finish(self._provider, self._finish)
