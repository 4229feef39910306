"""Checks the property tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sidecar.dialects.sse import SseDecoder, SseEvent
from sidecar.errors import TranslationError

T = TypeVar("T")


def single_event(frame: bytes) -> SseEvent:
    """The one complete SSE event a frame holds (as tests/dialects/sdk_streams.py checks it, without
    importing the SDKs that module needs)."""
    decoder = SseDecoder()
    [event] = decoder.feed(frame)
    assert not decoder.pending, frame
    return event


def or_refusal(call: Callable[[], T]) -> T | TranslationError:
    """What `call` returns, or the TranslationError it raises, which must say why; any other
    exception fails the test where it is raised."""
    try:
        return call()
    except TranslationError as exc:
        refusal = exc
    assert str(refusal), "a TranslationError must say why"
    return refusal
