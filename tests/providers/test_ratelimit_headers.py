"""How a 429's headers become a wait (docs/architecture.md §3 "Recording a limit", "Caps and bounds")."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.providers.ratelimit_headers import (
    MAX_WAIT_S,
    WARN_WAIT_S,
    RateLimitHint,
    WaitSource,
    parse_go_duration,
    parse_http_date,
    parse_rate_limit_hint,
    parse_rfc3339,
)

# Sun, 06 Nov 1994 08:49:37 GMT — the RFC 9110 example instant, so its dates read naturally.
RFC_NOW = float(calendar.timegm((1994, 11, 6, 8, 49, 37)))
# 2025-01-01T00:00:00Z, for the Anthropic RFC 3339 resets.
NOW_2025 = float(calendar.timegm((2025, 1, 1, 0, 0, 0)))
NOW_2026 = float(calendar.timegm((2026, 6, 1, 0, 0, 0)))


def hint(
    wait_s: float, source: WaitSource, *, capped: bool = False, excessive: bool = False
) -> RateLimitHint:
    return RateLimitHint(wait_s=wait_s, source=source, capped=capped, excessive=excessive)


# --- retry-after ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wait_s"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("007", 7.0),
        (".5", 0.5),
        ("86400", 86400.0),
    ],
)
def test_retry_after_as_delta_seconds_gives_that_many_seconds(value: str, wait_s: float) -> None:
    assert parse_rate_limit_hint({"retry-after": value}, now=RFC_NOW) == hint(wait_s, WaitSource.RETRY_AFTER)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:50:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:50:37 GMT",  # RFC 850
        "Sun Nov  6 08:50:37 1994",  # asctime
        "Sun Nov 6 08:50:37 1994",  # asctime without the padding space
        "sun, 06 nov 1994 08:50:37 gmt",  # wrong case, accepted leniently
    ],
)
def test_retry_after_as_an_http_date_gives_seconds_until_that_date(value: str) -> None:
    assert parse_rate_limit_hint({"retry-after": value}, now=RFC_NOW) == hint(60.0, WaitSource.RETRY_AFTER)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sat, 05 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:00:00 GMT",
        "Sun Nov  6 08:49:36 1994",
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ],
)
def test_retry_after_as_a_past_or_present_date_means_retry_now(value: str) -> None:
    assert parse_rate_limit_hint({"retry-after": value}, now=RFC_NOW) == hint(0.0, WaitSource.RETRY_AFTER)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "soon",
        "-1",
        "-0.5",
        "+5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1_000",
        "0x10",
        "1.2.3",
        "10 s",
        "١٢",  # Arabic-Indic digits that float() would accept
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 25:00:00 GMT",  # no such hour
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 PST",  # HTTP-dates are always GMT
        "2025-01-01T00:00:05Z",  # RFC 3339 is not an HTTP-date
    ],
)
def test_retry_after_that_is_garbage_or_negative_is_not_usable(value: str) -> None:
    assert parse_rate_limit_hint({"retry-after": value}, now=RFC_NOW) is None


def test_unusable_retry_after_falls_through_to_retry_after_ms() -> None:
    headers = {"retry-after": "later", "retry-after-ms": "250"}
    assert parse_rate_limit_hint(headers, now=RFC_NOW) == hint(0.25, WaitSource.RETRY_AFTER_MS)


def test_unusable_retry_after_falls_through_to_reset_headers() -> None:
    headers = {
        "retry-after": "-3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
    }
    assert parse_rate_limit_hint(headers, now=RFC_NOW) == hint(2.0, WaitSource.RESET_HEADER)


# --- HTTP-date details ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "now", "year"),
    [
        # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the previous century.
        ("Sunday, 06-Nov-94 08:49:37 GMT", NOW_2026, 1994),
        ("Wednesday, 01-Jan-76 00:00:00 GMT", NOW_2026, 2076),
        ("Friday, 01-Jan-77 00:00:00 GMT", NOW_2026, 1977),
        ("Tuesday, 01-Jan-30 00:00:00 GMT", NOW_2026, 2030),
        ("Thursday, 01-Jan-01 00:00:00 GMT", float(calendar.timegm((2099, 1, 1, 0, 0, 0))), 2101),
    ],
)
def test_rfc850_two_digit_year_is_resolved_against_the_clock(value: str, now: float, year: int) -> None:
    parsed = parse_http_date(value, now=now)
    assert parsed is not None
    month, day, hour, minute, second = (11, 6, 8, 49, 37) if "Nov" in value else (1, 1, 0, 0, 0)
    assert parsed == calendar.timegm((year, month, day, hour, minute, second))


def test_http_date_accepts_a_leap_second() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT", now=NOW_2026) == calendar.timegm(
        (2017, 1, 1, 0, 0, 0)
    )


# --- retry-after-ms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wait_s"),
    [("1500", 1.5), ("0", 0.0), ("12.5", 0.0125), ("60000", 60.0)],
)
def test_retry_after_ms_gives_milliseconds_as_seconds(value: str, wait_s: float) -> None:
    assert parse_rate_limit_hint({"retry-after-ms": value}, now=RFC_NOW) == hint(
        wait_s, WaitSource.RETRY_AFTER_MS
    )


@pytest.mark.parametrize("value", ["", "-100", "nan", "inf", "fast", "Sun, 06 Nov 1994 08:50:37 GMT"])
def test_retry_after_ms_that_is_garbage_or_negative_is_not_usable(value: str) -> None:
    assert parse_rate_limit_hint({"retry-after-ms": value}, now=RFC_NOW) is None


# --- OpenAI reset headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("120ms", 0.12),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("2s", 2.0),
        ("1m30.5s", 90.5),
        ("1h", 3600.0),
        ("1500us", 0.0015),
        ("1500µs", 0.0015),  # MICRO SIGN
        ("1500μs", 0.0015),  # GREEK SMALL LETTER MU
        ("2000000ns", 0.002),
        ("1s500ms", 1.5),
        (" 7s ", 7.0),
    ],
)
def test_go_duration_is_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "6", "-1s", "1d", "1S", "1.2.3s", "1 s", "6m0", "ms", "nan", "infs", "1e3s"]
)
def test_go_duration_that_is_malformed_or_negative_is_none(text: str) -> None:
    assert parse_go_duration(text) is None


@pytest.mark.parametrize(
    ("bucket", "reset", "wait_s"),
    [
        ("requests", "6m0s", 360.0),
        ("requests", "120ms", 0.12),
        ("tokens", "1.5s", 1.5),
        ("tokens", "0s", 0.0),
    ],
)
def test_openai_reset_of_an_exhausted_bucket_gives_its_duration(
    bucket: str, reset: str, wait_s: float
) -> None:
    headers = {f"x-ratelimit-remaining-{bucket}": "0", f"x-ratelimit-reset-{bucket}": reset}
    result = parse_rate_limit_hint(headers, now=RFC_NOW)
    assert result is not None
    assert result.source is WaitSource.RESET_HEADER
    assert result.wait_s == pytest.approx(wait_s)


# --- Anthropic reset headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2025-01-01T00:00:05Z", 5.0),
        ("2025-01-01T00:00:05.250Z", 5.25),
        ("2025-01-01T00:00:05+00:00", 5.0),
        ("2025-01-01T01:00:05+01:00", 5.0),
        ("2024-12-31T23:00:05-01:00", 5.0),
        ("2025-01-01t00:00:05z", 5.0),
        ("2025-01-01 00:00:05Z", 5.0),
    ],
)
def test_rfc3339_timestamp_is_read_as_unix_time(text: str, seconds: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(NOW_2025 + seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2025-01-01",
        "2025-01-01T00:00:05",  # no offset: ambiguous
        "2025-13-01T00:00:05Z",
        "2025-02-30T00:00:05Z",
        "2025-01-01T00:00:05+24:00",
        "0000-01-01T00:00:00Z",
        "tomorrow",
    ],
)
def test_rfc3339_that_is_malformed_is_none(text: str) -> None:
    assert parse_rfc3339(text) is None


@pytest.mark.parametrize("bucket", ["requests", "tokens", "input-tokens", "output-tokens"])
def test_anthropic_reset_of_an_exhausted_bucket_gives_seconds_until_it(bucket: str) -> None:
    headers = {
        f"anthropic-ratelimit-{bucket}-remaining": "0",
        f"anthropic-ratelimit-{bucket}-reset": "2025-01-01T00:00:05Z",
    }
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(5.0, WaitSource.RESET_HEADER)


def test_anthropic_reset_in_the_past_means_retry_now() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2024-12-31T23:59:00Z",
    }
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(0.0, WaitSource.RESET_HEADER)


# --- which reset headers count -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "6m0s"},
        {"x-ratelimit-reset-requests": "6m0s"},
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-requests": "6m0s"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-tokens": "6m0s"},
        {"x-ratelimit-remaining-requests": "0"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "soon"},
        {"x-ratelimit-remaining-requests": "00x", "x-ratelimit-reset-requests": "6m0s"},
        {
            "anthropic-ratelimit-tokens-remaining": "1200",
            "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:05Z",
        },
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:05Z",
        },
        {},
    ],
)
def test_reset_headers_are_ignored_unless_their_own_remaining_is_zero(headers: dict[str, str]) -> None:
    assert parse_rate_limit_hint(headers, now=NOW_2025) is None


def test_longest_exhausted_reset_wins() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1m0s",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": "2025-01-01T00:00:30Z",
    }
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(60.0, WaitSource.RESET_HEADER)


def test_reset_of_a_bucket_with_capacity_left_does_not_lengthen_the_wait() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "1h0m0s",
    }
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(2.0, WaitSource.RESET_HEADER)


def test_unparseable_reset_does_not_hide_a_parseable_one() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "garbage",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "3s",
    }
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(3.0, WaitSource.RESET_HEADER)


# --- priority ------------------------------------------------------------------------------------

ALL_SOURCES = {
    "retry-after": "7",
    "retry-after-ms": "3000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1m0s",
}


def test_retry_after_beats_retry_after_ms_and_reset_headers() -> None:
    assert parse_rate_limit_hint(ALL_SOURCES, now=NOW_2025) == hint(7.0, WaitSource.RETRY_AFTER)


def test_retry_after_ms_beats_reset_headers() -> None:
    headers = {k: v for k, v in ALL_SOURCES.items() if k != "retry-after"}
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(3.0, WaitSource.RETRY_AFTER_MS)


def test_retry_after_of_zero_wins_even_though_later_sources_say_wait() -> None:
    headers = {**ALL_SOURCES, "retry-after": "0"}
    assert parse_rate_limit_hint(headers, now=NOW_2025) == hint(0.0, WaitSource.RETRY_AFTER)


def test_no_usable_header_gives_none_so_the_router_backs_off() -> None:
    assert parse_rate_limit_hint({"content-type": "application/json"}, now=NOW_2025) is None


# --- caps and bounds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3600"}, hint(3600.0, WaitSource.RETRY_AFTER)),
        ({"retry-after": "86400"}, hint(86400.0, WaitSource.RETRY_AFTER)),
        ({"retry-after": "86401"}, hint(86401.0, WaitSource.RETRY_AFTER, excessive=True)),
        ({"retry-after": "172800"}, hint(MAX_WAIT_S, WaitSource.RETRY_AFTER, excessive=True)),
        (
            {"retry-after": "172801"},
            hint(MAX_WAIT_S, WaitSource.RETRY_AFTER, capped=True, excessive=True),
        ),
        (
            {"retry-after-ms": "172800001"},
            hint(MAX_WAIT_S, WaitSource.RETRY_AFTER_MS, capped=True, excessive=True),
        ),
        (
            {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "100h"},
            hint(MAX_WAIT_S, WaitSource.RESET_HEADER, capped=True, excessive=True),
        ),
        (
            {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "25h"},
            hint(25 * 3600.0, WaitSource.RESET_HEADER, excessive=True),
        ),
        (
            {
                "anthropic-ratelimit-tokens-remaining": "0",
                "anthropic-ratelimit-tokens-reset": "9999-12-31T23:59:59Z",
            },
            hint(MAX_WAIT_S, WaitSource.RESET_HEADER, capped=True, excessive=True),
        ),
        (
            {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
            hint(MAX_WAIT_S, WaitSource.RETRY_AFTER, capped=True, excessive=True),
        ),
    ],
)
def test_long_waits_are_flagged_above_a_day_and_capped_at_two_days(
    headers: dict[str, str], expected: RateLimitHint
) -> None:
    assert WARN_WAIT_S == 24 * 3600.0
    assert MAX_WAIT_S == 48 * 3600.0
    assert parse_rate_limit_hint(headers, now=NOW_2025) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retry-after", "1e308"),
        ("retry-after", "1e999"),
        ("retry-after", "99999999999999999999"),
        ("retry-after", "9" * 100_000),
        ("retry-after-ms", "1e308"),
        ("retry-after-ms", "9" * 100_000),
        ("x-ratelimit-reset-requests", "99999999999999999999h"),
        ("x-ratelimit-reset-requests", "9" * 100_000 + "h" + "9" * 100_000 + "m"),
    ],
)
def test_huge_numbers_are_capped_not_overflowed(name: str, value: str) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", name: value}
    result = parse_rate_limit_hint(headers, now=NOW_2025)
    assert result is not None
    assert result.wait_s == MAX_WAIT_S
    assert result.capped
    assert result.excessive


@pytest.mark.parametrize(
    "value",
    ["1" * 200_000 + "x", "1s" * 50_000 + "x", " " * 100_000, "Sun, " * 50_000, "2025-" * 50_000],
)
def test_very_long_garbage_is_rejected_quickly(value: str) -> None:
    headers = {
        "retry-after": value,
        "retry-after-ms": value,
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": value,
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": value,
    }
    assert parse_rate_limit_hint(headers, now=NOW_2025) is None


# --- fuzz ----------------------------------------------------------------------------------------

HEADER_NAMES = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    *(
        f"anthropic-ratelimit-{bucket}-{kind}"
        for bucket in ("requests", "tokens", "input-tokens", "output-tokens")
        for kind in ("remaining", "reset")
    ),
]

# Text that sometimes looks like the real thing, so the fuzz reaches past the first check. Built
# from small alphabets rather than st.from_regex, which is too slow to generate for a health check.
numeric = st.text(alphabet="0123456789.eE+- ", min_size=1, max_size=30)
go_duration = st.lists(
    st.tuples(numeric, st.sampled_from(["h", "m", "s", "ms", "us", "µs", "ns", ""])).map("".join),
    min_size=1,
    max_size=4,
).map("".join)
rfc3339 = st.tuples(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["Z", "+00:00", "-07:30", "+24:00", ""]),
).map("".join)
http_date = st.tuples(
    st.datetimes(),
    st.sampled_from(["%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]),
).map(lambda pair: pair[0].strftime(pair[1]))
header_value = st.one_of(st.text(), st.just("0"), numeric, go_duration, rfc3339, http_date)


@given(
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_value),
    now=st.floats(min_value=0.0, max_value=4e9),
)
def test_any_header_values_give_none_or_a_bounded_wait(headers: dict[str, str], now: float) -> None:
    result = parse_rate_limit_hint(headers, now=now)
    if result is not None:
        assert 0.0 <= result.wait_s <= MAX_WAIT_S
        assert result.source in {WaitSource.RETRY_AFTER, WaitSource.RETRY_AFTER_MS, WaitSource.RESET_HEADER}
        if result.capped:
            assert result.wait_s == MAX_WAIT_S
            assert result.excessive


@given(text=st.text(), now=st.floats(allow_nan=True, allow_infinity=True))
def test_helpers_never_raise(text: str, now: float) -> None:
    parse_go_duration(text)
    parse_rfc3339(text)
    parse_http_date(text, now=now)
