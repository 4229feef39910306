"""Read how long a provider wants us to back off from its 429 response headers.

docs/architecture.md §3 "Recording a limit" ranks the sources: ``retry-after`` (seconds or an HTTP-date), then
``retry-after-ms``, then the provider's reset headers for buckets whose "remaining" is 0. When none
gives a usable value the router falls back to exponential backoff, so this module answers ``None``
rather than guessing.

Header values come from upstream servers we do not control, so every parser here is total: any
string yields a number or ``None``, never an exception, and absurd waits are cut to ``MAX_WAIT_S``
("Caps and bounds"). The module is pure — the clock is passed in and nothing is logged; the caller
logs when ``RateLimitHint.excessive`` is set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

MAX_WAIT_S = 48 * 3600.0
WARN_WAIT_S = 24 * 3600.0


class WaitSource(StrEnum):
    """Where a recorded wait came from. This module yields only the header sources; the router
    uses BACKOFF when headers gave nothing and QUOTA for an exhausted account."""

    RETRY_AFTER = "retry-after"
    RETRY_AFTER_MS = "retry-after-ms"
    RESET_HEADER = "reset-header"
    BACKOFF = "backoff"
    QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class RateLimitHint:
    """A provider-given wait. ``wait_s`` is already capped; 0.0 means "retry now", not a limit."""

    wait_s: float
    source: WaitSource
    capped: bool  # the provider asked for more than MAX_WAIT_S
    excessive: bool  # the uncapped wait is above WARN_WAIT_S, so the caller should warn


# (remaining, reset) header pairs. A reset only matters when its own bucket is exhausted: a
# tokens reset 50 s away says nothing about a 429 caused by the requests bucket.
_OPENAI_PAIRS = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
)
_ANTHROPIC_PAIRS = tuple(
    (f"anthropic-ratelimit-{bucket}-remaining", f"anthropic-ratelimit-{bucket}-reset")
    for bucket in ("requests", "tokens", "input-tokens", "output-tokens")
)

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_MON = f"({'|'.join(_MONTH_NAMES)})"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# re.ASCII everywhere: without it \d and \s accept other scripts' digits and spaces, which float()
# and int() would then happily convert.
_FLAGS = re.ASCII | re.IGNORECASE
# RFC 9110 §5.6.7. Day names are accepted but not checked against the date, as the RFC allows.
_IMF_FIXDATE = re.compile(rf"[a-z]{{3}}, +([0-9]{{1,2}}) +{_MON} +([0-9]{{4}}) +{_TIME} +GMT", _FLAGS)
_RFC850_DATE = re.compile(rf"[a-z]{{6,9}}, +([0-9]{{1,2}})-{_MON}-([0-9]{{2}}) +{_TIME} +GMT", _FLAGS)
_ASCTIME_DATE = re.compile(rf"[a-z]{{3}} +{_MON} +([0-9]{{1,2}}) +{_TIME} +([0-9]{{4}})", _FLAGS)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})",
    _FLAGS,
)
# delta-seconds is 1*DIGIT, but some servers send "1.5" or an exponent; accept those, never a sign.
# Numbers are written so each digit run splits one way only: "[0-9]+\.?[0-9]*" would backtrack
# quadratically on a long run of digits followed by junk.
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?", _FLAGS)
# Go's time.Duration.String(): "6m0s", "1.5s", "120ms", "1h2m3s". Longer units come first in the
# alternation so "ms" is not read as minutes followed by a stray "s".
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "h": 3600.0, "m": 60.0, "s": 1.0}
_GO_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|h|m|s)"
_GO_DURATION = re.compile(rf"\+?(?:{_GO_PART})+", re.ASCII)
_GO_ONE_PART = re.compile(_GO_PART, re.ASCII)  # "6ms", "1.5s": what OpenAI sends on every answer
_GO_PARTS = re.compile(_GO_PART, re.ASCII)


def parse_rate_limit_hint(headers: Mapping[str, str], *, now: float) -> RateLimitHint | None:
    """The provider's wait from the first usable source in the order of docs/architecture.md §3, or None to
    use backoff.

    ``headers`` must have lower-case keys; ``now`` is the Unix time the response arrived.
    """
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        wait = parse_delta_seconds(retry_after)
        if wait is None:
            date = parse_http_date(retry_after, now=now)
            wait = None if date is None else date - now
        if wait is not None:
            return _hint(wait, WaitSource.RETRY_AFTER)

    retry_after_ms = headers.get("retry-after-ms")
    if retry_after_ms is not None:
        millis = parse_delta_seconds(retry_after_ms)
        if millis is not None:
            return _hint(millis / 1000.0, WaitSource.RETRY_AFTER_MS)

    waits = _exhausted_reset_waits(headers, now=now)
    if waits:
        # The provider admits us again only when every exhausted bucket has refilled.
        return _hint(max(waits), WaitSource.RESET_HEADER)
    return None


@dataclass(frozen=True, slots=True)
class RemainingBudget:
    """What a provider said is left of its quota, from the same header pairs (docs/scale-out.md,
    proactive routing): per bucket kind the count and the seconds until it refills, None where the
    headers said nothing usable. `tokens` is the smallest of the token buckets (Anthropic has
    tokens, input-tokens and output-tokens): a request needs room in each."""

    requests: int | None
    requests_reset_s: float | None
    tokens: int | None
    tokens_reset_s: float | None


def parse_remaining(headers: Mapping[str, str], *, now: float) -> RemainingBudget | None:
    """The remaining budget of OpenAI's `x-ratelimit-remaining-*` / `-reset-*` (Go durations) and
    Anthropic's `anthropic-ratelimit-*-remaining` / `-reset` (RFC 3339), or None when the response
    carries none. Total like the rest of this module; `now` is the Unix time of the response."""
    requests: tuple[int, float | None] | None = None
    tokens: tuple[int, float | None] | None = None
    for remaining_name, reset_name, counts_requests, openai in _BUDGET_HEADERS:
        text = headers.get(remaining_name)
        if text is None:
            continue
        count = _count(text)
        if count is None:
            continue
        reset = headers.get(reset_name)
        found = (count, None if reset is None else _reset_in(reset, openai=openai, now=now))
        if counts_requests:
            requests = found if requests is None or count < requests[0] else requests
        else:
            tokens = found if tokens is None or count < tokens[0] else tokens
    if requests is None and tokens is None:
        return None
    return RemainingBudget(
        requests[0] if requests else None,
        requests[1] if requests else None,
        tokens[0] if tokens else None,
        tokens[1] if tokens else None,
    )


# (remaining, reset, counts requests — else tokens, OpenAI's reset format — else Anthropic's)
_BUDGET_HEADERS = tuple(
    (remaining, reset, "requests" in remaining, openai)
    for pairs, openai in ((_OPENAI_PAIRS, True), (_ANTHROPIC_PAIRS, False))
    for remaining, reset in pairs
)


def _count(text: str) -> int | None:
    """A remaining count: ASCII digits only (bounded, so a huge value cannot cost a slow int())."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _reset_in(text: str, *, openai: bool, now: float) -> float | None:
    if openai:
        wait = parse_go_duration(text)
    else:
        at = parse_rfc3339(text)
        wait = None if at is None else at - now
    if wait is None or math.isnan(wait):
        return None
    return min(max(wait, 0.0), MAX_WAIT_S)


def parse_delta_seconds(text: str) -> float | None:
    """A non-negative decimal number, or None. Overflowing values come back as ``inf``."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    return float(text)  # cannot raise once the pattern matched; too large gives inf, not an error


def parse_http_date(text: str, *, now: float) -> float | None:
    """Unix time of an RFC 9110 HTTP-date in any of its three forms, or None.

    ``now`` resolves the two-digit year of the obsolete RFC 850 form.
    """
    text = text.strip()
    if m := _IMF_FIXDATE.fullmatch(text):
        day, mon, year, hh, mm, ss = m.groups()
        return _utc_timestamp(int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss))
    if m := _RFC850_DATE.fullmatch(text):
        day, mon, yy, hh, mm, ss = m.groups()
        year = _rfc850_year(int(yy), now=now)
        if year is None:
            return None
        return _utc_timestamp(year, _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss))
    if m := _ASCTIME_DATE.fullmatch(text):
        mon, day, hh, mm, ss, year = m.groups()
        return _utc_timestamp(int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss))
    return None


def parse_rfc3339(text: str) -> float | None:
    """Unix time of an RFC 3339 timestamp with an explicit offset, or None."""
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        return None
    year, mon, day, hh, mm, ss, fraction, offset = m.groups()
    base = _utc_timestamp(int(year), int(mon), int(day), int(hh), int(mm), int(ss))
    if base is None:
        return None
    offset_s = 0
    if offset.upper() != "Z":
        off_h, off_m = int(offset[1:3]), int(offset[4:6])
        if off_h > 23 or off_m > 59:
            return None
        offset_s = (off_h * 3600 + off_m * 60) * (-1 if offset[0] == "-" else 1)
    return base + (float(fraction) if fraction else 0.0) - offset_s


def parse_go_duration(text: str) -> float | None:
    """Seconds in a non-negative Go duration string such as ``1h2m3.5s``, or None."""
    text = text.strip()
    if text in ("0", "+0"):  # Go prints a zero duration as "0s" but accepts a bare "0"
        return 0.0
    if single := _GO_ONE_PART.fullmatch(text):  # one match instead of two: budgets read every answer
        return float(single[1]) * _GO_UNITS[single[2]]
    if not _GO_DURATION.fullmatch(text):
        return None
    return sum(float(num) * _GO_UNITS[unit] for num, unit in _GO_PARTS.findall(text))


def _exhausted_reset_waits(headers: Mapping[str, str], *, now: float) -> list[float]:
    """Waits from every bucket whose remaining count is 0 and whose reset header parses."""
    waits: list[float] = []
    for remaining, reset in _OPENAI_PAIRS:
        if _is_exhausted(headers.get(remaining)):
            duration = parse_go_duration(headers.get(reset, ""))
            if duration is not None:
                waits.append(duration)
    for remaining, reset in _ANTHROPIC_PAIRS:
        if _is_exhausted(headers.get(remaining)):
            at = parse_rfc3339(headers.get(reset, ""))
            if at is not None:
                waits.append(at - now)
    return waits


def _is_exhausted(remaining: str | None) -> bool:
    return remaining is not None and remaining.strip() == "0"


def _rfc850_year(yy: int, *, now: float) -> int | None:
    # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead means the previous century.
    try:
        this_year = datetime.fromtimestamp(now, UTC).year
    except (OverflowError, OSError, ValueError):
        return None
    year = this_year - this_year % 100 + yy
    if year > this_year + 50:
        year -= 100
    elif year <= this_year - 50:
        year += 100
    return year


def _utc_timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    # Second 60 is a legal leap second in both RFCs, but datetime rejects it, so it is added after.
    if second > 60:
        return None
    try:
        return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() + second
    except (OverflowError, ValueError):
        return None


def _hint(wait_s: float, source: WaitSource) -> RateLimitHint:
    if math.isnan(wait_s) or wait_s < 0.0:
        # A date already past means retry now (docs/architecture.md §3, "Caps and bounds"); NaN only
        # comes from a broken clock, and 0.0 keeps the result inside its documented range.
        wait_s = 0.0
    return RateLimitHint(
        wait_s=min(wait_s, MAX_WAIT_S),
        source=source,
        capped=wait_s > MAX_WAIT_S,
        excessive=wait_s > WARN_WAIT_S,
    )
