"""A fixed-window request limiter, so a simulated provider can run out of capacity by itself.

The demo and the end-to-end tests need a provider that "rate-limits after a few requests, with
Retry-After" and recovers when its window passes, without scripting each 429 by hand. Pure
arithmetic over an injected clock: tests advance a fake clock instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowState:
    """The outcome of one `WindowLimiter.acquire`, with what the rate-limit headers should say."""

    admitted: bool
    limit: int
    remaining: int
    reset_in: float  # seconds until the current window ends

    @property
    def retry_after(self) -> str:
        """Seconds until the window resets, rounded up, as the real APIs write `retry-after`."""
        return str(max(1, math.ceil(self.reset_in)))


class WindowLimiter:
    """Up to `max_requests` requests per window of `window_s` seconds; the window opens with the
    first request after the previous one ended."""

    def __init__(
        self, max_requests: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_requests < 0:
            raise ValueError("max_requests must be >= 0")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.max_requests = max_requests
        self.window_s = window_s
        self._clock = clock
        self._window_start: float | None = None
        self._used = 0

    def acquire(self) -> WindowState:
        """Count one request if the window has room; say how the window stands either way."""
        now = self._clock()
        if self._window_start is None or now >= self._window_start + self.window_s:
            self._window_start = now
            self._used = 0
        reset_in = self._window_start + self.window_s - now
        admitted = self._used < self.max_requests
        if admitted:
            self._used += 1
        return WindowState(admitted, self.max_requests, self.max_requests - self._used, reset_in)
