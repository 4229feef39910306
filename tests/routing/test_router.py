"""The router core: its small surface (`apply`, `route`, `describe_state`), the outcome → action
table it decides from, and two defects it once had, each pinned by a test that failed before the fix:

- after waiting out a limit (`max_wait_for_retry_after_secs`), a limit expiring within the clock's
  resolution counted as still in force, and the request answered 429 "retry after 0.000 s";
- a provider that is both an alternative and a fallback lost its fallback role, so after a prompt
  too long for the primary it was never tried.

The `Sidecar` runs in-process over memory transports with a fake clock: no sockets, no sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.config.models import DEFAULT_RATE_LIMITS, RateLimitSettings
from sidecar.dialects import Dialect
from sidecar.errors import RequestError
from sidecar.providers.classify import Outcome
from sidecar.providers.client import ClientHeaders
from sidecar.routing.exchange import InboundRequest
from sidecar.routing.failover import Router
from sidecar.routing.policy import POLICY, AttemptFailure, Next
from tests.support.memory_transport import (
    Script,
    Upstreams,
    error,
    in_memory_detour,
    openai_at,
    rate_limit,
    reply,
    sse,
)
from tests.support.running import FakeClock, config_text, limits_alternative_rule

TOO_LONG = error(
    400,
    "invalid_request_error",
    "This model's maximum context length is 8192 tokens.",
    code="context_length_exceeded",
    param="messages",
)


class EarlyTimer(FakeClock):
    """An event loop's timer: `sleep` may return up to one tick (here half a millisecond) before
    the monotonic clock reaches the deadline it was asked for, as uvloop's millisecond timers do."""

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(seconds - 0.0005, 0.0))


def alone(**strategy: Any) -> str:
    return config_text({"primary": openai_at("primary")}, [limits_alternative_rule(["primary"], **strategy)])


# --- defect: a limit that expires within the clock's resolution after a wait ----------------------------


async def test_after_waiting_out_a_limit_one_that_expires_within_the_clock_resolution_has_expired() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("1"), then=reply("after the wait")))
    config = alone(max_wait_for_retry_after_secs=2)
    async with in_memory_detour(config, upstreams, clock=EarlyTimer()) as detour:
        response = await detour.chat()

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "after the wait"
    assert detour.clock.slept == [pytest.approx(1.0)]
    assert upstreams.order == ["primary", "primary"]
    assert response.headers["x-detour-attempts"] == "2"


async def test_without_a_wait_a_limit_a_moment_from_expiry_still_holds() -> None:
    upstreams = Upstreams(primary=Script(rate_limit("1")), backup=reply("from backup"))
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup")}
    config = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    async with in_memory_detour(config, upstreams) as detour:
        await detour.chat()
        detour.clock.advance(0.9995)
        response = await detour.chat()

    assert response.headers["x-detour-provider"] == "backup", "the slack applies only after a wait"


# --- defect: a candidate keeps every role it was given --------------------------------------------------


def alternative_and_fallback() -> str:
    providers = {"primary": openai_at("primary"), "large": openai_at("large", model="gpt-4.1-large")}
    rule = limits_alternative_rule(["primary"], ["large"], fallbacks=["large"])
    return config_text(providers, [rule])


async def test_an_alternative_that_is_also_a_fallback_answers_a_prompt_too_long_for_the_primary() -> None:
    upstreams = Upstreams(primary=TOO_LONG, large=reply("a large model"))
    async with in_memory_detour(alternative_and_fallback(), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 200, response.text
    assert (response.headers["x-detour-provider"], response.headers["x-detour-model"]) == (
        "large",
        "gpt-4.1-large",
    )
    assert upstreams.order == ["primary", "large"]


async def test_a_candidate_with_two_roles_is_still_tried_once_per_request() -> None:
    upstreams = Upstreams(primary=rate_limit("30"), large=TOO_LONG)
    async with in_memory_detour(alternative_and_fallback(), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert upstreams.order == ["primary", "large"], "tried as the alternative, never again as the fallback"


# --- the outcome → action table -------------------------------------------------------------------------


def test_every_failure_outcome_has_exactly_one_row_in_the_policy_table() -> None:
    assert set(POLICY) == set(Outcome) - {Outcome.OK}


@pytest.mark.parametrize(
    ("outcome", "next_", "retry", "circuit"),
    [
        (Outcome.RATE_LIMITED, Next.LIMIT, False, False),
        (Outcome.QUOTA_EXHAUSTED, Next.LIMIT, False, False),
        (Outcome.SERVER_ERROR, Next.FAIL_OVER, True, True),
        (Outcome.CONNECT_ERROR, Next.FAIL_OVER, True, True),
        (Outcome.STREAM_ERROR, Next.FAIL_OVER, True, True),
        (Outcome.TIMEOUT, Next.FAIL_OVER, False, True),
        (Outcome.MALFORMED_ANSWER, Next.FAIL_OVER, False, True),
        (Outcome.TRANSLATION_ERROR, Next.FAIL_OVER, False, False),
        (Outcome.CONTEXT_LENGTH, Next.FALLBACKS_ONLY, False, False),
        (Outcome.CLIENT_ERROR, Next.RETURN, False, False),
        (Outcome.REFUSED, Next.RETURN, False, False),
    ],
)
def test_the_policy_table(outcome: Outcome, next_: Next, retry: bool, circuit: bool) -> None:
    policy = POLICY[outcome]

    assert (policy.next, policy.retry, policy.circuit) == (next_, retry, circuit)


def test_the_texts_outcomes_are_shown_as_at_the_edges_do_not_change() -> None:
    assert {outcome.name: outcome.value for outcome in Outcome} == {
        "OK": "ok",
        "RATE_LIMITED": "rate_limit",
        "QUOTA_EXHAUSTED": "quota",
        "SERVER_ERROR": "server_error",
        "CONTEXT_LENGTH": "context_length",
        "CLIENT_ERROR": "client_error",
        "TIMEOUT": "timeout",
        "CONNECT_ERROR": "connect_error",
        "STREAM_ERROR": "stream_error",
        "MALFORMED_ANSWER": "malformed_answer",
        "TRANSLATION_ERROR": "translation_error",
        "REFUSED": "refused",
    }


def test_an_attempts_error_type_is_its_status_when_it_had_one_else_its_outcome() -> None:
    assert AttemptFailure(Outcome.RATE_LIMITED, 429).error_type == "429"
    assert AttemptFailure(Outcome.TIMEOUT).error_type == "timeout"


# --- typed settings -------------------------------------------------------------------------------------


def test_a_rule_without_rate_limit_settings_routes_with_the_one_set_of_defaults() -> None:
    text = config_text(
        {"p": openai_at("p")}, [{"name": "plain", "matcher": {"always": True}, "primary": "p"}]
    )
    (rule,) = load_config_text(text, source="test", env={}).config.routing.rules

    assert rule.rate_limits is DEFAULT_RATE_LIMITS
    assert (
        RateLimitSettings(
            exponential_backoff_base_secs=60, max_backoff_secs=3600, max_wait_for_retry_after_secs=0
        )
        == DEFAULT_RATE_LIMITS
    )


def test_a_limits_alternative_rule_routes_with_its_own_settings() -> None:
    text = alone(exponential_backoff_base_secs=5, max_wait_for_retry_after_secs=1)
    (rule,) = load_config_text(text, source="test", env={}).config.routing.rules

    assert (rule.rate_limits.exponential_backoff_base_secs, rule.rate_limits.max_backoff_secs) == (5, 3600)
    assert rule.rate_limits.max_wait_for_retry_after_secs == 1


# --- the router's surface -------------------------------------------------------------------------------


async def test_route_without_a_table_is_the_one_place_that_answers_503() -> None:
    request = InboundRequest(Dialect.OPENAI, {"model": "m"}, b"{}", "m", False, ClientHeaders(Dialect.OPENAI))

    with pytest.raises(RequestError) as raised:
        await Router().route(request)

    assert (raised.value.status, str(raised.value)) == (503, "no routing config is loaded yet")


async def test_apply_resizes_the_limit_table_reconfigures_circuits_and_keeps_only_known_providers() -> None:
    first = config_text(
        {"a": openai_at("a"), "b": openai_at("b")},
        [limits_alternative_rule(["a"], ["b"])],
        rate_limit_table_size=10,
    )
    second = config_text(
        {"a": openai_at("a")},
        [limits_alternative_rule(["a"])],
        rate_limit_table_size=20,
        circuit_breaker={"failure_threshold": 2},
    )
    sidecar = Sidecar(load_config_text(first, source="test", env={}), transport_factory=Upstreams().factory)
    router = sidecar.router
    for provider in ("a", "b"):
        router.circuits.record_failure(provider, "m", 0.0)

    sidecar.apply(load_config_text(second, source="test", env={}))

    assert router.limits.capacity == 20
    assert router.circuits.settings.failure_threshold == 2
    assert [key for key, _ in router.circuits.items()] == [("a", "m")]
    assert router.table is sidecar.current_table()
    assert router.describe_state()["config"]["providers"] == ["a"]
    await sidecar.aclose()


async def test_a_reload_routes_with_the_new_tables_plans() -> None:
    def mapped(to: str) -> str:
        providers = {"primary": openai_at("primary", model_map={"gpt-4o": to})}
        return config_text(providers, [limits_alternative_rule(["primary"])])

    upstreams = Upstreams()
    async with in_memory_detour(mapped("first-model"), upstreams) as detour:
        await detour.chat()
        detour.sidecar.apply(load_config_text(mapped("second-model"), source="test", env={}))
        await detour.chat()

    assert [body["model"] for body in upstreams.bodies("primary")] == ["first-model", "second-model"]


async def test_active_limits_count_limited_candidates_per_provider() -> None:
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup")}
    config = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    async with in_memory_detour(config, Upstreams(primary=rate_limit("30"))) as detour:
        await detour.chat()

        assert detour.sidecar.router.active_limits() == {"primary": 1, "backup": 0}


# --- the stream pipeline maps the decoder's own error ---------------------------------------------------


async def test_an_sse_event_that_never_ends_is_a_broken_stream_and_fails_over() -> None:
    from sidecar.dialects.sse import MAX_PENDING_BYTES

    endless = sse(b"data: " + b"x" * (MAX_PENDING_BYTES + 1))
    providers = {"primary": openai_at("primary", max_retries=0), "backup": openai_at("backup")}
    config = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    async with in_memory_detour(config, Upstreams(primary=endless)) as detour:
        response = await detour.chat(stream=True)
        state = await detour.state()

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert state["circuits"][0]["consecutive_failures"] == 1, "counted as a stream error"
