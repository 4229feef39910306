"""Routing decisions for a request nested deeper than Detour can write again, through the transport
seam: orjson reads 1024 levels but writes 254 (`sidecar/dialects/json_out.py`), and Python prints
fewer than 1000. A candidate that would need the body written again — a mapped model, a
translation, the usage option of an OpenAI stream — cannot be sent it and is skipped uncalled, like
any candidate that cannot express a request (docs/architecture.md §3); when no candidate can take
it, the client gets a 400 in its own dialect that names the depth, never a 500. A candidate that
passes the client's bytes through as they are still serves them.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.support.memory_transport import (
    ANTHROPIC_AUTH,
    OPENAI_AUTH,
    InMemoryDetour,
    Upstreams,
    anthropic_at,
    in_memory_detour,
    openai_at,
)
from tests.support.running import config_text, limits_alternative_rule

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"}


DEEP = "@deep@"


def deep_body(client: str, depth: int, *, where: str, stream: bool = False) -> bytes:
    """A valid request holding a value `depth` arrays deep `where` it is carried: in `metadata`
    (written again only within the dialect), in a tool's schema (carried across), as a content
    part's type (OpenAI) or a tool's type (Anthropic), which a refusal names. Built by hand: orjson
    will not write it either."""
    body: dict[str, Any] = {
        "model": MODELS[client],
        "max_tokens": 16,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    if where == "metadata":
        body["metadata"] = {"x": DEEP}
    elif where == "schema":
        schema = {"type": "object", "properties": {"x": DEEP}}
        if client == "openai":
            body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        else:
            body["tools"] = [{"name": "f", "input_schema": schema}]
    elif client == "openai":
        body["messages"] = [{"role": "user", "content": [{"type": DEEP, "text": "Hi"}]}]
    else:
        body["tools"] = [{"name": "f", "type": DEEP, "input_schema": {"type": "object"}}]
    return orjson.dumps(body).replace(orjson.dumps(DEEP), b"[" * depth + b"]" * depth)


async def send(detour: InMemoryDetour, client: str, raw: bytes) -> httpx.Response:
    headers = {**(OPENAI_AUTH if client == "openai" else ANTHROPIC_AUTH), "content-type": "application/json"}
    return await detour.request("POST", PATHS[client], content=raw, headers=headers)


def one_provider(kind: str, client: str) -> str:
    """One provider of `kind` that serves the client's model under another name, so the body is
    always written again: mapped within a dialect, translated across."""
    other = "gpt-4o-mini" if kind == "openai" else "claude-haiku-4-5"
    at = openai_at if kind == "openai" else anthropic_at
    providers = {"only": at("only", model_map={MODELS[client]: other})}
    return config_text(providers, [limits_alternative_rule(["only"])])


def assert_400_naming_the_depth(response: httpx.Response, client: str) -> None:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    if client == "anthropic":
        assert (body["type"], body["error"]["type"]) == ("error", "invalid_request_error")
    else:
        assert body["error"]["type"] == "invalid_request_error"
    assert "nested deeper than 254 levels" in body["error"]["message"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_body_nested_deeper_than_detour_writes_is_a_400_and_no_upstream_is_called(
    client: str, provider: str, stream: bool
) -> None:
    upstreams = Upstreams()
    async with in_memory_detour(one_provider(provider, client), upstreams) as detour:
        where = "metadata" if provider == client else "schema"
        response = await send(detour, client, deep_body(client, 300, where=where, stream=stream))

    assert_400_naming_the_depth(response, client)
    assert upstreams.log == []


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_a_value_nested_deeper_than_python_prints_is_a_400_too(client: str) -> None:
    """A refusal names the content part's (or tool's) type; one 1000 arrays deep cannot be printed."""
    upstreams = Upstreams()
    other = "anthropic" if client == "openai" else "openai"
    async with in_memory_detour(one_provider(other, client), upstreams) as detour:
        response = await send(detour, client, deep_body(client, 1000, where="type"))

    assert_400_naming_the_depth(response, client)
    assert upstreams.log == []


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_a_candidate_that_passes_the_bytes_through_still_serves_a_deep_body(client: str) -> None:
    at = openai_at if client == "openai" else anthropic_at
    providers = {
        "mapped": at("mapped", model_map={MODELS[client]: "another-model"}),
        "same": at("same"),
    }
    upstreams = Upstreams()
    raw = deep_body(client, 300, where="metadata")
    text = config_text(providers, [limits_alternative_rule(["mapped"], ["same"])])
    async with in_memory_detour(text, upstreams) as detour:
        response = await send(detour, client, raw)

    assert response.status_code == 200, response.text
    assert response.headers["x-detour-provider"] == "same"
    assert upstreams.order == ["same"], "the candidate that needs the body written again is not called"
    assert upstreams.to("same")[0].content == raw, "the client's bytes, as they were"
