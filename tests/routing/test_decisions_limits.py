"""Routing decisions about 429s, through the transport seam: fail over at once, remember the limit
for as long as the provider said (every source of that wait, in priority order), answer 429 honestly
when everything is limited, and wait out a short limit only when the rule allows it.

Each test drives the real `Sidecar` in-process over `MemoryTransport`s and observes only what a
client and an operator can: which provider each upstream request went to, the HTTP answer, and
`/admin/state`. Time is a `FakeClock`: nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import pytest

from tests.support.memory_transport import (
    Script,
    Upstreams,
    anthropic_at,
    anthropic_reset_headers,
    in_memory_detour,
    openai_at,
    openai_reset_headers,
    rate_limit,
    reply,
    server_error,
)
from tests.support.running import FakeClock, config_text, limits_alternative_rule


def pair(dialect: str = "openai", *, routing: dict[str, Any] | None = None, **strategy: Any) -> str:
    """primary → backup, both of one dialect, under one limits-alternative rule."""
    at = openai_at if dialect == "openai" else anthropic_at
    providers = {"primary": at("primary"), "backup": at("backup")}
    rule = limits_alternative_rule(["primary"], ["backup"], **strategy)
    return config_text(providers, [rule], **(routing or {}))


def alone(**strategy: Any) -> str:
    """A rule with one OpenAI provider and nothing else to fail over to."""
    return config_text({"primary": openai_at("primary")}, [limits_alternative_rule(["primary"], **strategy)])


# --- 429: the next candidate at once, the limit remembered -------------------------------------------


async def test_a_429_is_answered_by_the_next_candidate_at_once_and_the_limit_is_remembered() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("30")), backup=reply("from backup"))
    async with in_memory_detour(pair(), upstreams) as detour:
        first = await detour.chat()
        assert detour.clock.slept == [], "no sleep between candidates"
        second = await detour.chat()
        detour.clock.advance(29.9)
        still_limited = await detour.chat()
        detour.clock.advance(0.2)
        recovered = await detour.chat()

    assert first.status_code == 200
    assert first.json()["choices"][0]["message"]["content"] == "from backup"
    assert (first.headers["x-detour-provider"], first.headers["x-detour-attempts"]) == ("backup", "2")
    assert (second.headers["x-detour-provider"], second.headers["x-detour-attempts"]) == ("backup", "1")
    assert still_limited.headers["x-detour-provider"] == "backup"
    assert (recovered.headers["x-detour-provider"], recovered.headers["x-detour-attempts"]) == (
        "primary",
        "1",
    )
    assert upstreams.order == ["primary", "backup", "backup", "backup", "primary"]


async def test_a_limit_holds_for_the_model_that_was_limited_not_for_the_providers_other_models() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("30")))
    async with in_memory_detour(pair(), upstreams) as detour:
        big = await detour.chat("gpt-4o")
        mini = await detour.chat("gpt-4o-mini")
        limits = await detour.limits()

    assert big.headers["x-detour-provider"] == "backup"
    assert mini.headers["x-detour-provider"] == "primary"
    assert list(limits) == [("primary", "gpt-4o")]


async def test_an_exhausted_quota_limits_every_model_of_the_provider_for_the_longest_backoff() -> None:
    upstreams = Upstreams(primary=Script(rate_limit(quota=True)))
    async with in_memory_detour(pair(max_backoff_secs=600), upstreams) as detour:
        big = await detour.chat("gpt-4o")
        mini = await detour.chat("gpt-4o-mini")
        limits = await detour.limits()

    assert big.headers["x-detour-provider"] == "backup"
    assert mini.headers["x-detour-provider"] == "backup", "another model of the same provider is skipped too"
    assert [body["model"] for body in upstreams.bodies("primary")] == ["gpt-4o"]
    quota = limits[("primary", None)]
    assert (quota["reason"], quota["wait_source"], quota["wait_s"]) == ("quota", "quota", 600.0)


async def test_a_full_limit_table_lets_the_soonest_expiry_give_way_and_counts_it() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("30")), backup=Script(rate_limit("60")))
    async with in_memory_detour(pair(routing={"rate_limit_table_size": 1}), upstreams) as detour:
        limited = await detour.chat()
        state = await detour.state()
        again = await detour.chat()

    assert limited.status_code == 429
    assert state["rate_limit_table"] == {"size": 1, "capacity": 1, "evictions": 1}
    assert [(item["provider"], item["wait_s"]) for item in state["rate_limited"]] == [("backup", 60.0)]
    assert again.headers["x-detour-provider"] == "primary", "the evicted limit no longer holds"


# --- how long a limit lasts: every source, in priority order ------------------------------------------


def _http_date(form: str) -> Callable[[float], str]:
    """Retry-After as an HTTP-date 20 s after `wall`, in one of RFC 9110's three forms."""

    def build(wall: float) -> str:
        at = datetime.fromtimestamp(wall + 20, UTC)
        if form == "imf-fixdate":
            return formatdate(wall + 20, usegmt=True)
        if form == "rfc850":
            return at.strftime("%A, %d-%b-%y %H:%M:%S GMT")
        return f"{at:%a %b} {at.day:>2} {at:%H:%M:%S %Y}"  # asctime

    return build


# (dialect, headers built from the wall clock, expected wait in seconds, expected source)
WAIT_SOURCES = {
    "delta-seconds": ("openai", lambda wall: {"retry-after": "17"}, 17.0, "retry-after"),
    "imf-fixdate": (
        "openai",
        lambda wall: {"retry-after": _http_date("imf-fixdate")(wall)},
        20.0,
        "retry-after",
    ),
    "rfc850-date": ("openai", lambda wall: {"retry-after": _http_date("rfc850")(wall)}, 20.0, "retry-after"),
    "asctime-date": (
        "openai",
        lambda wall: {"retry-after": _http_date("asctime")(wall)},
        20.0,
        "retry-after",
    ),
    "retry-after-ms": ("anthropic", lambda wall: {"retry-after-ms": "2500"}, 2.5, "retry-after-ms"),
    "openai-reset": ("openai", lambda wall: openai_reset_headers(360), 360.0, "reset-header"),
    "anthropic-reset": (
        "anthropic",
        lambda wall: anthropic_reset_headers(wall + 45, now=wall),
        45.0,
        "reset-header",
    ),
}


@pytest.mark.parametrize("source_name", list(WAIT_SOURCES))
async def test_the_provider_given_wait_decides_when_the_candidate_is_asked_again(source_name: str) -> None:
    dialect, headers, wait, source = WAIT_SOURCES[source_name]
    clock = FakeClock()
    upstreams = Upstreams(primary=Script(rate_limit(headers=headers(clock.wall()))))
    async with in_memory_detour(pair(dialect), upstreams, clock=clock) as detour:
        send = detour.chat if dialect == "openai" else detour.messages
        first = await send()
        (limit,) = (await detour.state())["rate_limited"]
        clock.advance(wait - 0.1)
        before_expiry = await send()
        clock.advance(0.2)
        after_expiry = await send()

    assert first.headers["x-detour-provider"] == "backup"
    assert (limit["provider"], limit["wait_source"]) == ("primary", source)
    assert limit["wait_s"] == pytest.approx(wait)
    assert before_expiry.headers["x-detour-provider"] == "backup"
    assert after_expiry.headers["x-detour-provider"] == "primary"
    assert upstreams.order == ["primary", "backup", "backup", "primary"]


async def test_without_any_hint_the_wait_is_an_exponential_backoff_that_doubles_per_429() -> None:
    upstreams = Upstreams(primary=Script(rate_limit(), rate_limit()))
    async with in_memory_detour(
        pair(exponential_backoff_base_secs=10, max_backoff_secs=100), upstreams
    ) as detour:
        await detour.chat()
        first = (await detour.limits())[("primary", "gpt-4o")]
        detour.clock.advance(first["wait_s"] - 0.01)
        assert (await detour.chat()).headers["x-detour-provider"] == "backup", "still limited"
        detour.clock.advance(0.02)
        await detour.chat()
        second = (await detour.limits())[("primary", "gpt-4o")]
        detour.clock.advance(second["wait_s"] + 0.01)
        back = await detour.chat()

    assert first["wait_source"] == second["wait_source"] == "backoff"
    assert 9.0 <= first["wait_s"] <= 11.0, "base 10 s, ±10 % jitter"
    assert 18.0 <= second["wait_s"] <= 22.0, "doubled for the second consecutive 429"
    assert second["consecutive_429s"] == 2
    assert back.headers["x-detour-provider"] == "primary"


async def test_the_backoff_never_exceeds_max_backoff_secs() -> None:
    upstreams = Upstreams(primary=Script(rate_limit()))
    async with in_memory_detour(
        pair(exponential_backoff_base_secs=100, max_backoff_secs=30), upstreams
    ) as detour:
        await detour.chat()
        limit = (await detour.limits())[("primary", "gpt-4o")]

    assert (limit["wait_source"], limit["wait_s"]) == ("backoff", 30.0)


async def test_retry_after_outranks_retry_after_ms_and_the_reset_headers() -> None:
    headers = {"retry-after-ms": "9000", **openai_reset_headers(360)}
    upstreams = Upstreams(primary=Script(rate_limit("5", headers=headers)))
    async with in_memory_detour(pair(), upstreams) as detour:
        await detour.chat()
        limit = (await detour.limits())[("primary", "gpt-4o")]

    assert (limit["wait_source"], limit["wait_s"]) == ("retry-after", 5.0)


async def test_retry_after_ms_outranks_the_reset_headers() -> None:
    clock = FakeClock()
    headers = {"retry-after-ms": "2500", **anthropic_reset_headers(clock.wall() + 45, now=clock.wall())}
    upstreams = Upstreams(primary=Script(rate_limit(headers=headers)))
    async with in_memory_detour(pair("anthropic"), upstreams, clock=clock) as detour:
        await detour.messages()
        (limit,) = (await detour.state())["rate_limited"]

    assert (limit["wait_source"], limit["wait_s"]) == ("retry-after-ms", 2.5)


async def test_an_unreadable_retry_after_falls_through_to_the_next_source() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("soon", headers={"retry-after-ms": "3000"})))
    async with in_memory_detour(pair(), upstreams) as detour:
        await detour.chat()
        limit = (await detour.limits())[("primary", "gpt-4o")]

    assert (limit["wait_source"], limit["wait_s"]) == ("retry-after-ms", 3.0)


async def test_a_reset_header_counts_only_when_its_bucket_is_exhausted() -> None:
    # The requests bucket still has 3 left, so its reset in 6 minutes says nothing about this 429.
    upstreams = Upstreams(primary=Script(rate_limit(headers=openai_reset_headers(360, remaining=3))))
    async with in_memory_detour(pair(exponential_backoff_base_secs=10), upstreams) as detour:
        await detour.chat()
        limit = (await detour.limits())[("primary", "gpt-4o")]

    assert limit["wait_source"] == "backoff"
    assert 9.0 <= limit["wait_s"] <= 11.0


async def test_a_provider_given_wait_is_capped_at_48_hours() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("999999")))
    async with in_memory_detour(pair(), upstreams) as detour:
        await detour.chat()
        limit = (await detour.limits())[("primary", "gpt-4o")]

    assert (limit["wait_source"], limit["wait_s"]) == ("retry-after", 48 * 3600.0)


@pytest.mark.parametrize(
    "retry_after",
    [lambda wall: "0", lambda wall: formatdate(wall - 60, usegmt=True)],
    ids=["zero", "past-date"],
)
async def test_retry_now_skips_the_provider_for_this_request_only(
    retry_after: Callable[[float], str],
) -> None:
    clock = FakeClock()
    upstreams = Upstreams(primary=Script(rate_limit(retry_after(clock.wall()))))
    async with in_memory_detour(pair(), upstreams, clock=clock) as detour:
        first = await detour.chat()
        limits = await detour.limits()
        second = await detour.chat()

    assert first.headers["x-detour-provider"] == "backup", "retry now still fails over"
    assert limits == {}, "nor is the provider marked limited"
    assert second.headers["x-detour-provider"] == "primary"


# --- when everything is limited ------------------------------------------------------------------------


async def test_when_every_provider_says_retry_now_the_client_gets_429_with_retry_after_one_second() -> None:
    upstreams = Upstreams(primary=rate_limit("0"), backup=rate_limit("0"))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()
        limits = await detour.limits()
        again = await detour.chat()

    assert response.status_code == 429
    assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("1", "1000")
    assert response.headers["x-detour-attempts"] == "2"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert limits == {}, "retry now is not a remembered limit"
    assert again.headers["x-detour-attempts"] == "2", "both are asked again on the next request"
    assert upstreams.order == ["primary", "backup"] * 2


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_when_every_candidate_is_limited_the_client_gets_429_with_the_soonest_expiry(
    client: str,
) -> None:
    # An OpenAI primary and an Anthropic alternative: the answer is in the client's dialect either way.
    providers = {
        "primary": openai_at("primary", model_map={"claude-sonnet-4-5": "gpt-4o"}),
        "backup": anthropic_at("backup", model_map={"gpt-4o": "claude-sonnet-4-5"}),
    }
    text = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    upstreams = Upstreams(primary=rate_limit("40"), backup=rate_limit(headers={"retry-after-ms": "6500"}))
    async with in_memory_detour(text, upstreams) as detour:
        send = detour.chat if client == "openai" else detour.messages
        first = await send()
        second = await send()
        detour.clock.advance(2)
        later = await send()

    for response in (first, second):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7", "6.5 s rounded up"
        assert response.headers["retry-after-ms"] == "6500"
    assert (later.headers["retry-after"], later.headers["retry-after-ms"]) == ("5", "4500")
    assert first.headers["x-detour-attempts"] == "2"
    assert second.headers["x-detour-attempts"] == "0", "nothing is sent while everything is limited"
    assert upstreams.order == ["primary", "backup"]
    body = first.json()
    if client == "openai":
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert "rate-limited" in body["error"]["message"]
    else:
        assert body["type"] == "error"
        assert body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("order", ["limited-first", "failed-first"])
async def test_a_limited_candidate_and_a_failed_one_give_502_with_the_limits_retry_after(order: str) -> None:
    limited, failed = ("primary", "backup") if order == "limited-first" else ("backup", "primary")
    upstreams = Upstreams(**{limited: rate_limit("30"), failed: server_error(500)})
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 502
    assert response.headers["retry-after"] == "30"
    # The limit runs from the 429; a retry's backoff after it has already used some of it.
    (backoff,) = detour.clock.slept
    elapsed_ms = backoff * 1000 if order == "limited-first" else 0.0
    assert int(response.headers["retry-after-ms"]) == pytest.approx(30000 - elapsed_ms, abs=1)
    assert response.headers["x-detour-attempts"] == "3", "the 429, then the 500 and its one retry"
    assert response.json()["error"]["type"] == "server_error"
    assert len(upstreams.to(failed)) == 2


# --- max_wait_for_retry_after_secs -----------------------------------------------------------------------


async def test_a_short_limit_is_waited_out_on_the_same_candidate_when_nothing_else_is_available() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("2"), then=reply("after the wait")))
    async with in_memory_detour(alone(max_wait_for_retry_after_secs=3), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "after the wait"
    assert response.headers["x-detour-attempts"] == "2"
    assert detour.clock.slept == [pytest.approx(2.0)]
    assert upstreams.order == ["primary", "primary"]


async def test_a_limit_already_known_is_waited_out_without_asking_the_provider_first() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("10")))
    async with in_memory_detour(alone(max_wait_for_retry_after_secs=3), upstreams) as detour:
        limited = await detour.chat()
        detour.clock.advance(8)
        waited = await detour.chat()

    assert limited.status_code == 429, "10 s is more than the rule waits"
    assert waited.status_code == 200
    assert waited.headers["x-detour-attempts"] == "1", "the first pass skipped it; only the retry was sent"
    assert detour.clock.slept == [pytest.approx(2.0)]


async def test_a_limit_longer_than_max_wait_is_not_waited_out() -> None:
    upstreams = Upstreams(primary=rate_limit("20"))
    async with in_memory_detour(alone(max_wait_for_retry_after_secs=3), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 429
    assert response.headers["retry-after"] == "20"
    assert detour.clock.slept == []


async def test_a_request_waits_for_a_limit_at_most_once() -> None:
    upstreams = Upstreams(primary=rate_limit("2"))
    async with in_memory_detour(alone(max_wait_for_retry_after_secs=3), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 429
    assert response.headers["x-detour-attempts"] == "2"
    assert detour.clock.slept == [pytest.approx(2.0)]


async def test_no_one_waits_when_another_candidate_can_answer() -> None:
    upstreams = Upstreams(primary=rate_limit("2"))
    async with in_memory_detour(pair(max_wait_for_retry_after_secs=3), upstreams) as detour:
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "backup"
    assert detour.clock.slept == []


async def test_no_one_waits_for_a_limit_when_another_candidate_failed() -> None:
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup", max_retries=0)}
    rule = limits_alternative_rule(["primary"], ["backup"], max_wait_for_retry_after_secs=3)
    upstreams = Upstreams(primary=rate_limit("2"), backup=server_error(503))
    async with in_memory_detour(config_text(providers, [rule]), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 502
    assert response.headers["retry-after"] == "2"
    assert detour.clock.slept == []


async def test_an_ineligible_candidate_does_not_stop_a_short_limit_being_waited_out() -> None:
    providers = {
        "primary": openai_at("primary"),
        "claude": anthropic_at("claude", api_key="sk-ant", model_map={"gpt-4o": "claude-sonnet-4-5"}),
    }
    rule = limits_alternative_rule(["primary"], ["claude"], max_wait_for_retry_after_secs=3)
    upstreams = Upstreams(primary=Script(rate_limit("2")))
    async with in_memory_detour(config_text(providers, [rule]), upstreams) as detour:
        response = await detour.chat(n=2)  # Anthropic cannot return two choices

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "primary"
    assert detour.clock.slept == [pytest.approx(2.0)]
    assert upstreams.order == ["primary", "primary"]
