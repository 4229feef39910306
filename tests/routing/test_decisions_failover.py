"""Routing decisions about failures other than 429, through the transport seam: same-candidate
retries for 5xx and lost connections, no retry for a silent provider, context length to the
rule's fallbacks, other 4xx returned as they are, and circuit breakers.

Each test drives the real `Sidecar` in-process over `MemoryTransport`s with a `FakeClock`, and
observes which provider each upstream request went to, the HTTP answer and `/admin/state`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.memory_transport import (
    Script,
    ScriptedBody,
    Stall,
    Upstreams,
    anthropic_at,
    connection_reset,
    error,
    in_memory_detour,
    openai_at,
    raises,
    rate_limit,
    reply,
    server_error,
    silent,
)
from tests.support.running import FakeClock, config_text, limits_alternative_rule


def pair(*, breaker: dict[str, Any] | None = None, **primary_settings: Any) -> str:
    """An OpenAI primary (with `primary_settings`) → an OpenAI backup."""
    providers = {"primary": openai_at("primary", **primary_settings), "backup": openai_at("backup")}
    routing = {"circuit_breaker": breaker} if breaker else {}
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"])], **routing)


# --- 5xx and lost connections: retried on the same candidate, then failover --------------------------


async def test_a_single_500_is_retried_on_the_same_candidate_and_the_attempts_say_so() -> None:
    upstreams = Upstreams(primary=Script(server_error(500), then=reply("second try")))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()
        counters = await detour.counters()

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "second try"
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("primary", "2")
    assert upstreams.order == ["primary", "primary"]
    assert counters["retries"] == 1
    (backoff,) = detour.clock.slept
    assert 0.05 <= backoff <= 0.15, "retry_backoff_ms 100, jittered"


async def test_5xx_is_retried_max_retries_times_with_a_doubling_backoff_then_fails_over() -> None:
    upstreams = Upstreams(primary=server_error(503))
    async with in_memory_detour(pair(max_retries=2, retry_backoff_ms=1000), upstreams) as detour:
        response = await detour.chat()
        state = await detour.state()

    assert response.status_code == 200
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "4")
    assert upstreams.order == ["primary"] * 3 + ["backup"]
    first, second = detour.clock.slept
    assert 0.5 <= first <= 1.5
    assert 1.0 <= second <= 3.0, "doubled"
    assert state["counters"]["retries"] == 2
    assert state["rate_limited"] == [], "a 5xx is not a rate limit"


async def test_an_anthropic_529_overloaded_is_retried_then_fails_over() -> None:
    providers = {"primary": anthropic_at("primary"), "backup": anthropic_at("backup")}
    text = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    upstreams = Upstreams(primary=server_error(529))
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.messages()

    assert response.status_code == 200
    assert response.json()["type"] == "message"
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "3")
    assert upstreams.order == ["primary", "primary", "backup"]


async def test_with_max_retries_zero_a_5xx_fails_over_at_once() -> None:
    upstreams = Upstreams(primary=server_error(502))
    async with in_memory_detour(pair(max_retries=0), upstreams) as detour:
        response = await detour.chat()

    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "2")
    assert detour.clock.slept == []


@pytest.mark.parametrize(
    "failure",
    [
        lambda: httpx.ConnectError("All connection attempts failed"),
        lambda: ConnectionRefusedError(111, "Connection refused"),
        lambda: ConnectionResetError(104, "Connection reset by peer"),
        lambda: httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["connect-error", "refused", "reset", "disconnected"],
)
async def test_a_connection_lost_before_the_answer_is_retried_then_fails_over(failure: Any) -> None:
    upstreams = Upstreams(primary=raises(failure))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()
        counters = await detour.counters()

    assert response.status_code == 200
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "3")
    assert upstreams.order == ["primary", "primary", "backup"]
    assert counters["retries"] == 1


async def test_a_body_cut_half_way_is_retried_like_a_lost_connection() -> None:
    def half_then_reset(request: Any) -> httpx.Response:
        body = ScriptedBody([b'{"id":"chatcmpl-1","object":"chat.comp', connection_reset()])
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=body)

    upstreams = Upstreams(primary=Script(half_then_reset, then=reply("whole")))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "whole"
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("primary", "2")


def answered_200(body: bytes, content_type: str = "application/json") -> Any:
    def handle(request: Any) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, stream=ScriptedBody([body]))

    return handle


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",  # a proxy's page with the wrong status
        b'{"object": "list", "data": []}',  # JSON, but not a chat completion
        b'{"id": "chatcmpl-1", "choices": [',  # cut short, yet whole as far as HTTP can tell
    ],
)
async def test_a_200_that_is_no_answer_fails_over_without_a_retry_and_is_counted(body: bytes) -> None:
    upstreams = Upstreams(primary=answered_200(body))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()
        counters = await detour.counters()

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello there."
    assert upstreams.order == ["primary", "backup"], "not asked again: it would be paid for again"
    assert (counters["malformed_answers"], counters["retries"]) == (1, 0)


async def test_a_200_that_is_no_answer_from_the_only_candidate_is_a_502_never_a_success() -> None:
    providers = {"primary": anthropic_at("primary")}
    text = config_text(providers, [limits_alternative_rule(["primary"], [])])
    upstreams = Upstreams(primary=answered_200(b'{"type": "message"}'))
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.messages()

    assert response.status_code == 502
    assert response.json()["type"] == "error"
    assert "malformed_answer" in response.json()["error"]["message"]


async def test_when_every_candidate_fails_the_client_gets_502_in_its_dialect_naming_the_failures() -> None:
    providers = {
        "primary": anthropic_at("primary", max_retries=0),
        "backup": anthropic_at("backup", max_retries=0),
    }
    text = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    upstreams = Upstreams(primary=server_error(500), backup=raises(lambda: httpx.ConnectError("refused")))
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.messages()

    assert response.status_code == 502
    assert "retry-after" not in response.headers, "nothing is limited: there is no time to name"
    assert response.headers["x-detour-attempts"] == "2"
    body = response.json()
    assert (body["type"], body["error"]["type"]) == ("error", "api_error")
    assert "primary: server_error" in body["error"]["message"]
    assert "backup: connect_error" in body["error"]["message"]


# --- timeouts: a silent provider is not asked again ----------------------------------------------------


async def test_a_timeout_before_the_first_byte_fails_over_without_a_retry() -> None:
    upstreams = Upstreams(primary=raises(lambda: httpx.ReadTimeout("timed out")))
    async with in_memory_detour(pair(max_retries=3), upstreams) as detour:
        response = await detour.chat()
        counters = await detour.counters()

    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "2")
    assert upstreams.order == ["primary", "backup"]
    assert counters["timeouts"] == 1
    assert counters["retries"] == 0
    assert detour.clock.slept == []


async def test_a_provider_silent_past_timeout_secs_fails_over_without_a_retry() -> None:
    stall = Stall()
    upstreams = Upstreams(primary=silent(stall))
    async with in_memory_detour(pair(timeout_secs=0.05, max_retries=3), upstreams) as detour:
        response = await detour.chat()
        counters = await detour.counters()

    assert stall.reached.is_set()
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "2")
    assert upstreams.order == ["primary", "backup"]
    assert counters["timeouts"] == 1


async def test_the_providers_timeouts_reach_the_transport() -> None:
    upstreams = Upstreams()
    async with in_memory_detour(pair(timeout_secs=12, connect_timeout_secs=3), upstreams) as detour:
        await detour.chat()

    sent = [timeouts for transport in upstreams.transports for timeouts in transport.timeouts]
    assert [(t.connect_s, t.read_s) for t in sent] == [(3, 12)]


# --- context length: only the fallbacks ------------------------------------------------------------------

OPENAI_TOO_LONG = error(
    400,
    "invalid_request_error",
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. "
    "Please reduce the length of the messages.",
    code="context_length_exceeded",
    param="messages",
)
ANTHROPIC_TOO_LONG = error(400, "invalid_request_error", "prompt is too long: 210417 tokens > 200000 maximum")


def with_fallback(primary_type: str) -> str:
    at = openai_at if primary_type == "openai" else anthropic_at
    providers = {
        "primary": at("primary", model="small-model"),
        "second": at("second", model="small-model-2"),
        "alt": at("alt", model="small-model-3"),
        "large": openai_at("large", model="gpt-4.1"),
    }
    rule = limits_alternative_rule(["primary", "second"], ["alt"], fallbacks=["large"])
    return config_text(providers, [rule])


@pytest.mark.parametrize(
    ("primary_type", "too_long"),
    [("openai", OPENAI_TOO_LONG), ("anthropic", ANTHROPIC_TOO_LONG)],
    ids=["openai-context-length-exceeded", "anthropic-prompt-too-long"],
)
async def test_context_length_exceeded_skips_every_primary_and_alternative_for_the_fallbacks(
    primary_type: str, too_long: Any
) -> None:
    upstreams = Upstreams(primary=too_long)
    async with in_memory_detour(with_fallback(primary_type), upstreams) as detour:
        response = await detour.chat()
        state = await detour.state()

    assert response.status_code == 200
    assert (response.headers["x-detour-provider"], response.headers["x-detour-model"]) == ("large", "gpt-4.1")
    assert response.headers["x-detour-attempts"] == "2"
    assert upstreams.order == ["primary", "large"], "the same-size primary and alternative are skipped"
    assert upstreams.bodies("large")[0]["model"] == "gpt-4.1"
    assert state["rate_limited"] == []
    assert state["circuits"] == []


async def test_a_prompt_too_long_for_every_fallback_returns_the_providers_400_not_a_502() -> None:
    providers = {"primary": openai_at("primary"), "same": openai_at("same"), "other": openai_at("other")}
    rule = limits_alternative_rule(["primary"], ["other"], fallbacks=["same"])
    upstreams = Upstreams(primary=OPENAI_TOO_LONG)
    async with in_memory_detour(config_text(providers, [rule]), upstreams) as detour:
        response = await detour.chat()

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert response.headers["x-detour-provider"] == "primary"
    assert upstreams.order == ["primary"], "a fallback with the same model would overflow the same way"


async def test_an_anthropic_prompt_too_long_reaches_an_openai_client_as_context_length_exceeded() -> None:
    providers = {"claude": anthropic_at("claude", model="claude-sonnet-4-5", api_key="sk-ant")}
    upstreams = Upstreams(claude=ANTHROPIC_TOO_LONG)
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["claude"])]), upstreams
    ) as detour:
        response = await detour.chat()

    assert response.status_code == 400
    error_body = response.json()["error"]
    assert error_body["code"] == "context_length_exceeded"
    assert "prompt is too long" in error_body["message"]


# --- any other 4xx: returned as it is, no failover ---------------------------------------------------------


@pytest.mark.parametrize(
    "client_error",
    [
        error(
            400,
            "invalid_request_error",
            "Your request was rejected by the safety system.",
            code="content_policy_violation",
        ),
        error(
            401, "invalid_request_error", "Incorrect API key provided: sk-cl***ient.", code="invalid_api_key"
        ),
        error(
            404,
            "invalid_request_error",
            "The model `gpt-4o` does not exist or you do not have access to it.",
            code="model_not_found",
        ),
        error(422, "invalid_request_error", "Unprocessable"),
    ],
    ids=["400", "401", "404", "422"],
)
async def test_another_4xx_is_returned_to_the_client_exactly_as_the_provider_sent_it(
    client_error: Any,
) -> None:
    upstreams = Upstreams(primary=client_error)
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat()
        state = await detour.state()
    sent = client_error(upstreams.log[0])

    assert response.status_code == sent.status_code
    assert response.content == await sent.aread(), "the provider's own body, byte for byte"
    assert response.headers["x-detour-provider"] == "primary"
    assert upstreams.order == ["primary"], "no failover, no retry"
    assert state["rate_limited"] == []
    assert state["circuits"] == []


async def test_an_anthropic_client_error_reaches_an_openai_client_in_openai_shape() -> None:
    providers = {"claude": anthropic_at("claude", model="claude-sonnet-4-5", api_key="sk-ant")}
    upstreams = Upstreams(
        claude=error(400, "invalid_request_error", "messages: text content blocks must be non-empty")
    )
    async with in_memory_detour(
        config_text(providers, [limits_alternative_rule(["claude"])]), upstreams
    ) as detour:
        response = await detour.chat()

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["message"] == "messages: text content blocks must be non-empty"


# --- circuit breakers --------------------------------------------------------------------------------------


async def test_the_circuit_opens_after_failure_threshold_failures_and_the_candidate_is_skipped() -> None:
    breaker = {"failure_threshold": 2, "success_threshold": 1, "timeout_secs": 30}
    upstreams = Upstreams(primary=server_error(503))
    async with in_memory_detour(pair(breaker=breaker, max_retries=0), upstreams) as detour:
        failing = [await detour.chat() for _ in range(2)]
        state = await detour.state()
        skipped = [await detour.chat() for _ in range(3)]

    assert [r.headers["x-detour-provider"] for r in failing + skipped] == ["backup"] * 5
    assert [r.headers["x-detour-attempts"] for r in skipped] == ["1"] * 3, "an open circuit costs nothing"
    assert len(upstreams.to("primary")) == 2
    (circuit,) = state["circuits"]
    assert (circuit["provider"], circuit["state"], circuit["retry_in_s"]) == ("primary", "open", 30.0)
    assert state["counters"]["circuit_opens"] == 1


async def test_a_single_failure_below_the_threshold_does_not_open_the_circuit() -> None:
    breaker = {"failure_threshold": 2, "success_threshold": 1, "timeout_secs": 30}
    upstreams = Upstreams(primary=Script(server_error(503), then=reply()))
    async with in_memory_detour(pair(breaker=breaker, max_retries=0), upstreams) as detour:
        await detour.chat()
        after = await detour.chat()
        state = await detour.state()

    assert after.headers["x-detour-provider"] == "primary"
    assert state["circuits"] == [], "a success resets the count"


async def test_429s_never_open_a_circuit() -> None:
    breaker = {"failure_threshold": 1, "success_threshold": 1, "timeout_secs": 30}
    upstreams = Upstreams(primary=rate_limit("0"))
    async with in_memory_detour(pair(breaker=breaker), upstreams) as detour:
        for _ in range(3):
            await detour.chat()
        state = await detour.state()

    assert state["circuits"] == []
    assert upstreams.order == ["primary", "backup"] * 3


async def test_when_every_circuit_is_open_the_client_gets_503_with_retry_after() -> None:
    breaker = {"failure_threshold": 1, "success_threshold": 1, "timeout_secs": 30}
    text = config_text(
        {"primary": openai_at("primary", max_retries=0)},
        [limits_alternative_rule(["primary"])],
        circuit_breaker=breaker,
    )
    upstreams = Upstreams(primary=server_error(500))
    async with in_memory_detour(text, upstreams) as detour:
        failed = await detour.chat()
        detour.clock.advance(10)
        open_circuit = await detour.chat()

    assert failed.status_code == 502
    assert open_circuit.status_code == 503
    assert (open_circuit.headers["retry-after"], open_circuit.headers["retry-after-ms"]) == ("20", "20000")
    assert open_circuit.headers["x-detour-attempts"] == "0"
    assert "open circuit" in open_circuit.json()["error"]["message"]
    assert upstreams.order == ["primary"]


async def test_after_timeout_secs_one_probe_is_let_through_and_a_failed_probe_reopens_the_circuit() -> None:
    clock = FakeClock()
    breaker = {"failure_threshold": 1, "success_threshold": 1, "timeout_secs": 30}
    upstreams = Upstreams(primary=server_error(503))
    async with in_memory_detour(pair(breaker=breaker, max_retries=2), upstreams, clock=clock) as detour:
        await detour.chat()  # three tries: the circuit opens at the last failure
        (opened,) = (await detour.state())["circuits"]
        upstreams.clear()
        clock.advance(opened["retry_in_s"] + 0.001)  # just past the rounded interval
        probe = await detour.chat()
        after_probe = await detour.chat()
        state = await detour.state()

    assert probe.headers["x-detour-provider"] == "backup"
    assert probe.headers["x-detour-attempts"] == "2", "a probe is one request, never retried"
    assert after_probe.headers["x-detour-attempts"] == "1", "reopened: skipped again"
    assert upstreams.order == ["primary", "backup", "backup"]
    assert state["circuits"][0]["state"] == "open"
    assert state["counters"]["circuit_opens"] == 2


async def test_while_the_probe_is_in_flight_other_requests_skip_the_candidate() -> None:
    clock = FakeClock()
    breaker = {"failure_threshold": 1, "success_threshold": 1, "timeout_secs": 30}
    probe_stall = Stall()
    upstreams = Upstreams(primary=Script(server_error(503), silent(probe_stall)))
    async with in_memory_detour(pair(breaker=breaker, max_retries=0), upstreams, clock=clock) as detour:
        await detour.chat()
        clock.advance(30)
        probe = asyncio.create_task(detour.chat())
        async with asyncio.timeout(5):
            await probe_stall.reached.wait()
        meanwhile = await detour.chat()
        probe_stall.go.set()
        probed = await probe
        closed = await detour.chat()

    assert meanwhile.headers["x-detour-provider"] == "backup"
    assert probed.headers["x-detour-provider"] == "primary"
    assert closed.headers["x-detour-provider"] == "primary"
    assert upstreams.order == ["primary", "backup", "primary", "backup", "primary"]


async def test_the_circuit_closes_only_after_success_threshold_successful_probes() -> None:
    clock = FakeClock()
    breaker = {"failure_threshold": 1, "success_threshold": 2, "timeout_secs": 30}
    upstreams = Upstreams(primary=Script(server_error(503)))
    async with in_memory_detour(pair(breaker=breaker, max_retries=0), upstreams, clock=clock) as detour:
        await detour.chat()
        clock.advance(30)
        first = await detour.chat()
        half_open = (await detour.state())["circuits"]
        second = await detour.chat()
        closed = (await detour.state())["circuits"]

    assert first.headers["x-detour-provider"] == second.headers["x-detour-provider"] == "primary"
    assert [(c["state"], c["retry_in_s"]) for c in half_open] == [("half_open", None)]
    assert closed == []


# --- which rule, which candidates ----------------------------------------------------------------------


async def test_a_model_no_rule_matches_gets_404_naming_it_and_no_provider_is_called() -> None:
    providers = {"primary": openai_at("primary")}
    upstreams = Upstreams()
    text = config_text(providers, [limits_alternative_rule(["primary"], pattern="^gpt-")])
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.chat("llama-3")

    assert response.status_code == 404
    assert "llama-3" in response.json()["error"]["message"]
    assert upstreams.log == []


async def test_round_robin_starts_each_request_with_the_next_provider_and_skips_a_limited_one() -> None:
    providers = {name: openai_at(name) for name in ("a", "b", "c")}
    rule = {
        "name": "rr",
        "matcher": {"always": True},
        "strategy": {"type": "round-robin", "providers": ["a", "b", "c"]},
    }
    upstreams = Upstreams(b=Script(rate_limit("60")))
    async with in_memory_detour(config_text(providers, [rule]), upstreams) as detour:
        served = [(await detour.chat()).headers["x-detour-provider"] for _ in range(6)]

    assert served == ["a", "c", "c", "a", "c", "c"]
    assert upstreams.order == ["a", "b", "c", "c", "a", "c", "c"]


async def test_weighted_round_robin_interleaves_by_weight() -> None:
    providers = {"heavy": openai_at("heavy"), "light": openai_at("light")}
    strategy = {
        "type": "weighted-round-robin",
        "providers": [{"id": "heavy", "weight": 2}, {"id": "light", "weight": 1}],
    }
    rule = {"name": "wrr", "matcher": {"always": True}, "strategy": strategy}
    async with in_memory_detour(config_text(providers, [rule]), Upstreams()) as detour:
        served = [(await detour.chat()).headers["x-detour-provider"] for _ in range(6)]

    assert served == ["heavy", "light", "heavy"] * 2
