"""What each upstream outcome does to a request, end to end (SPEC §3), and the guarantees around it:
limits per candidate, quota per provider, context length to fallbacks, client errors returned as
they are, retry-after 0, reset headers, and bad requests answered in the client's own dialect."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from sidecar.simulate import ErrorReply, RateLimit, Reply, ServerError, SimulatedProvider
from tests.support.running import (
    config_text,
    limits_alternative_rule,
    pair_config,
    provider,
    running_sidecar,
)

AUTH = {"authorization": "Bearer sk-client"}


def chat(model: str = "gpt-4o", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}


async def test_a_429_for_one_model_does_not_block_another_model_on_the_same_provider() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(RateLimit(retry_after="60"))
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url) as client,
        ):
            big = await client.post("/v1/chat/completions", json=chat("gpt-4o"), headers=AUTH)
            mini = await client.post("/v1/chat/completions", json=chat("gpt-4o-mini"), headers=AUTH)
            state = (await client.get("/admin/state")).json()

    assert big.headers["x-detour-provider"] == "backup"
    assert mini.headers["x-detour-provider"] == "primary"
    assert [(item["provider"], item["model"]) for item in state["rate_limited"]] == [("primary", "gpt-4o")]


async def test_an_exhausted_quota_limits_every_model_of_the_provider() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(RateLimit(quota=True, limit_headers=False))
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url) as client,
        ):
            await client.post("/v1/chat/completions", json=chat("gpt-4o"), headers=AUTH)
            mini = await client.post("/v1/chat/completions", json=chat("gpt-4o-mini"), headers=AUTH)
            state = (await client.get("/admin/state")).json()

    assert mini.headers["x-detour-provider"] == "backup"
    assert len(primary.requests) == 1
    (limit,) = state["rate_limited"]
    assert (limit["provider"], limit["model"], limit["reason"], limit["wait_source"]) == (
        "primary",
        None,
        "quota",
        "quota",
    )
    assert detour.observer.rate_limited[0].reason == "quota"


async def test_the_openai_reset_header_sets_the_limit_when_no_retry_after_is_sent() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(
            RateLimit(
                limit_headers=False,
                headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"},
            )
        )
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url) as client,
        ):
            await client.post("/v1/chat/completions", json=chat(), headers=AUTH)

    (event,) = detour.observer.rate_limited
    assert (event.wait_s, event.source) == (360.0, "reset-header")


async def test_retry_after_zero_skips_the_provider_for_this_request_only() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(RateLimit(retry_after="0", limit_headers=False))
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url) as client,
        ):
            first = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
            second = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)

    assert first.headers["x-detour-provider"] == "backup", "retry-after: 0 must not disable failover"
    assert second.headers["x-detour-provider"] == "primary", "nor mark the provider limited"


async def test_a_server_error_fails_over_and_is_not_recorded_as_a_rate_limit() -> None:
    async with SimulatedProvider("anthropic") as primary, SimulatedProvider("anthropic") as backup:
        primary.script(ServerError(529), ServerError(503))  # the first try and its one retry
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url) as client,
        ):
            body = {
                "model": "claude-x",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
            }
            response = await client.post("/v1/messages", json=body, headers={"x-api-key": "k"})

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "backup"
    assert response.headers["x-detour-attempts"] == "3"
    assert detour.observer.rate_limited == []
    assert [e.reason for e in detour.observer.failovers] == ["server_error"]


async def test_context_length_exceeded_skips_to_the_rules_fallbacks() -> None:
    async with (
        SimulatedProvider("openai") as primary,
        SimulatedProvider("openai") as backup,
        SimulatedProvider("openai") as large,
    ):
        primary.script(
            ErrorReply(
                400,
                "invalid_request_error",
                "This model's maximum context length is 128000 tokens.",
                code="context_length_exceeded",
            )
        )
        providers = {
            "primary": provider("openai", primary.base_url),
            "backup": provider("openai", backup.base_url),
            "large": provider("openai", large.base_url, model="gpt-4.1"),
        }
        rule = limits_alternative_rule(["primary"], ["backup"], fallbacks=["large"])
        async with running_sidecar(config_text(providers, [rule])) as detour:
            async with httpx.AsyncClient(base_url=detour.url) as client:
                response = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)

    assert response.status_code == 200
    assert response.headers["x-detour-provider"] == "large"
    assert response.headers["x-detour-model"] == "gpt-4.1"
    assert response.json()["model"] == "gpt-4.1", "the model field names the model that answered"
    assert backup.requests == [], "the same-size alternative is skipped"
    assert large.requests[0].body["model"] == "gpt-4.1"


async def test_a_client_error_is_returned_as_the_provider_sent_it_without_failover() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(
            ErrorReply(
                400,
                "invalid_request_error",
                "Your request was rejected by the safety system.",
                code="content_policy_violation",
            )
        )
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url) as client,
        ):
            response = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert backup.requests == []


async def test_when_every_candidate_fails_without_a_limit_the_client_gets_502_in_its_dialect() -> None:
    async with SimulatedProvider("anthropic") as primary:
        primary.default = ServerError(500)
        providers = {"primary": provider("anthropic", primary.base_url)}
        async with running_sidecar(config_text(providers, [limits_alternative_rule(["primary"])])) as detour:
            async with httpx.AsyncClient(base_url=detour.url) as client:
                body = {
                    "model": "claude-x",
                    "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                response = await client.post("/v1/messages", json=body, headers={"x-api-key": "k"})

    assert response.status_code == 502
    assert response.headers["x-detour-attempts"] == "2", "one try and one same-candidate retry"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "api_error"


async def test_bad_requests_get_a_400_in_the_clients_own_dialect() -> None:
    async with SimulatedProvider("openai") as primary:
        providers = {"primary": provider("openai", primary.base_url)}
        async with running_sidecar(config_text(providers, [limits_alternative_rule(["primary"])])) as detour:
            async with httpx.AsyncClient(base_url=detour.url) as client:
                broken = await client.post("/v1/chat/completions", content=b"{not json", headers=AUTH)
                no_model = await client.post("/v1/chat/completions", json={"messages": []}, headers=AUTH)
                anthropic_no_max = await client.post(
                    "/v1/messages", json={"model": "m", "messages": []}, headers={"x-api-key": "k"}
                )
                unknown = await client.get("/v1/unknown")

    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert no_model.status_code == 400
    assert no_model.json()["error"]["param"] == "model"
    assert anthropic_no_max.status_code == 400
    assert anthropic_no_max.json()["error"]["type"] == "invalid_request_error"
    assert unknown.status_code == 404
    assert primary.requests == []


async def test_an_unmatched_model_gets_404_naming_it() -> None:
    async with SimulatedProvider("openai") as primary:
        providers = {"primary": provider("openai", primary.base_url)}
        rule = limits_alternative_rule(["primary"], pattern="^gpt-")
        async with running_sidecar(config_text(providers, [rule])) as detour:
            async with httpx.AsyncClient(base_url=detour.url) as client:
                response = await client.post("/v1/chat/completions", json=chat("llama-3"), headers=AUTH)

    assert response.status_code == 404
    assert "llama-3" in response.json()["error"]["message"]


async def test_fifty_concurrent_requests_are_all_answered_while_the_primary_starts_rate_limiting() -> None:
    async with SimulatedProvider("openai") as primary, SimulatedProvider("openai") as backup:
        primary.script(Reply(), Reply(), Reply())
        primary.default = RateLimit(retry_after="30")
        async with (
            running_sidecar(pair_config(primary, backup)) as detour,
            httpx.AsyncClient(base_url=detour.url, limits=httpx.Limits(max_connections=50)) as client,
        ):
            responses = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=chat(), headers=AUTH) for _ in range(50))
            )
            after = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
            state = (await client.get("/admin/state")).json()

    assert all(response.status_code == 200 for response in responses)
    served = [response.headers["x-detour-provider"] for response in responses]
    primary_429s = len(primary.requests) - served.count("primary")
    assert served.count("primary") <= 3
    assert served.count("primary") + served.count("backup") == 50
    assert 1 <= primary_429s <= 50 - served.count("primary"), "a bounded burst, then skipped"
    assert after.headers["x-detour-provider"] == "backup"
    assert after.headers["x-detour-attempts"] == "1"
    (limit,) = state["rate_limited"]
    assert limit["consecutive_429s"] == 1, "a burst of concurrent 429s does not escalate the backoff"
    assert 29 <= limit["remaining_s"] <= 30


async def test_a_configured_api_key_replaces_the_clients_credential() -> None:
    async with SimulatedProvider("openai", api_key="sk-configured") as primary:
        providers = {"primary": provider("openai", primary.base_url, api_key="$PRIMARY_KEY")}
        text = config_text(providers, [limits_alternative_rule(["primary"])])
        async with running_sidecar(text, env={"PRIMARY_KEY": "sk-configured"}) as detour:
            async with httpx.AsyncClient(base_url=detour.url) as client:
                response = await client.post(
                    "/v1/chat/completions", json=chat(), headers={"authorization": "Bearer sk-client-own"}
                )
                state = await client.get("/admin/state")

    assert response.status_code == 200
    assert primary.requests[0].headers["authorization"] == "Bearer sk-configured"
    assert "sk-client-own" not in orjson.dumps([r.headers for r in primary.requests]).decode()
    assert "sk-configured" not in state.text


async def test_a_client_header_beyond_ascii_is_passed_on_not_a_500() -> None:
    """A forwarded header holding UTF-8 text (an organisation name, say) reaches the provider as it
    was sent; a request with ASCII headers keeps the provider's wire request as before."""
    async with SimulatedProvider("openai") as upstream:
        text = config_text(
            {"only": provider("openai", upstream.base_url)}, [limits_alternative_rule(["only"], [])]
        )
        async with running_sidecar(text) as detour, httpx.AsyncClient(base_url=detour.url) as client:
            utf8 = {**AUTH, "openai-organization": "Société Générale".encode()}
            beyond = await client.post("/v1/chat/completions", json=chat(), headers=utf8)  # type: ignore[arg-type]
            plain = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)

    assert (beyond.status_code, plain.status_code) == (200, 200)
    first, second = upstream.requests
    assert first.headers["openai-organization"] == "Société Générale"
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer sk-client"
    for recorded in (first, second):
        assert recorded.headers["host"] == f"127.0.0.1:{upstream.port}"
        assert recorded.headers["content-length"] == str(len(orjson.dumps(recorded.body)))
        assert "transfer-encoding" not in recorded.headers
