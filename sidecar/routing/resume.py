"""Resuming a stream that broke after content reached the client (`resume_streams: true`).

The relay keeps a `SentLedger` of the text the client already has. When the stream breaks, the
router's resumer asks the next candidate to continue: with an assistant prefill if the provider
`supports_prefill`, otherwise from scratch, passing on only what goes beyond the text already
sent, and only if the new answer begins with exactly that text. Nothing reaches the client until
the continuation has produced new text, so a continuation that fails early costs the client
nothing but the original error. A refusal (any 4xx, a refusal in the answer) never replaces the
original error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
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
from sidecar.dialects.sse import SseDecoder, SseEvent
from sidecar.dialects.stream_events import EventKind, classify_event
from sidecar.errors import UpstreamError
from sidecar.providers.client import ClientHeaders, ProviderClient
from sidecar.providers.http import UpstreamResponse

log = logging.getLogger("detour.resume")


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


Resumer = Callable[[SentLedger], Awaitable[AsyncIterator[bytes] | None]]


class Refused(Exception):
    """The resuming provider refused; the client must get the original error instead."""


async def open_continuation(
    client: ProviderClient,
    upstream_body: bytes,
    headers: ClientHeaders,
    *,
    client_dialect: Dialect,
    ledger: SentLedger,
    frames: ContinuationFrames,
) -> AsyncIterator[bytes] | None:
    """A stream of client frames continuing the answer, or None if this candidate cannot help.
    Raises `Refused` when the provider refused (the caller stops trying)."""
    dialect = client.dialect
    sent = ledger.text
    if client.config.supports_prefill:
        upstream_body, overlap = prefill_request(dialect, upstream_body, sent)
        gate = PrefixGate(overlap)
    else:
        gate = PrefixGate(sent)
    config = client.config
    try:
        async with asyncio.timeout(config.first_token_timeout_secs or config.timeout_secs):
            response = await client.send(upstream_body, headers)
            if response.status >= 400:
                await response.read()
                if 400 <= response.status < 500 and response.status != 429:
                    raise Refused(f"HTTP {response.status}")
                return None
            decoder = SseDecoder()
            chunks = response.iter_bytes().__aiter__()
            first: list[bytes] = []
            finish: str | None = None
            try:
                while not first and finish is None:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        await response.close()
                        return None
                    first, finish = _continue(dialect, decoder.feed(chunk), gate, frames)
            except BaseException:
                await response.close()
                raise
    except (UpstreamError, TimeoutError) as exc:
        log.info("resume with %s failed before new text: %s", client.provider_id, exc)
        return None
    return _rest(
        response,
        chunks,
        decoder,
        gate,
        frames,
        dialect,
        client_dialect,
        first,
        finish,
        config.stream_idle_timeout_secs,
    )


def _continue(
    dialect: Dialect, events: list[SseEvent], gate: PrefixGate, frames: ContinuationFrames
) -> tuple[list[bytes], str | None]:
    out: list[bytes] = []
    finish: str | None = None
    for event in events:
        kind = classify_event(dialect, event)
        if kind is EventKind.ERROR:
            raise UpstreamError("the resuming provider reported an error")
        delta = read_delta(dialect, event)
        if not delta.plain:
            raise Refused("the continuation is not plain text")
        if delta.text:
            new = gate.feed(delta.text)
            if new is None:
                raise Refused("the new answer does not begin with the text already sent")
            if new:
                out.append(frames.text(new))
        if delta.finish is not None:
            finish = delta.finish
    return out, finish


async def _rest(
    response: UpstreamResponse,
    chunks: AsyncIterator[bytes],
    decoder: SseDecoder,
    gate: PrefixGate,
    frames: ContinuationFrames,
    dialect: Dialect,
    client_dialect: Dialect,
    first: list[bytes],
    finish: str | None,
    idle_timeout_s: float | None,
) -> AsyncIterator[bytes]:
    try:
        for frame in first:
            yield frame
        try:
            while finish is None:
                try:
                    async with asyncio.timeout(idle_timeout_s):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                new_frames, finish = _continue(dialect, decoder.feed(chunk), gate, frames)
                for frame in new_frames:
                    yield frame
        except (UpstreamError, Refused) as exc:
            yield render_stream_error(client_dialect, 502, f"the resumed stream broke: {exc}")
            return
        except TimeoutError:
            yield render_stream_error(client_dialect, 504, "the resumed stream stalled", error_type="timeout")
            return
        if finish is None:
            yield render_stream_error(
                client_dialect, 502, "the resumed stream ended before the answer was complete"
            )
            return
        for frame in frames.finish(dialect, finish):
            yield frame
    finally:
        await response.close()
