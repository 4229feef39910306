"""The request body cap is a setting (`detour serve --max-body-bytes`): beyond it, 413 in the client's
own dialect and nothing upstream; up to it, the request is served (docs/operations.md, "Limits")."""

from __future__ import annotations

import httpx
import orjson
import pytest

from sidecar.ingress.asgi import DEFAULT_MAX_BODY_BYTES
from sidecar.simulate import SimulatedProvider
from tests.support.running import config_text, limits_alternative_rule, provider, running_sidecar

CAP = 1000


def body_of(size: int, model: str) -> bytes:
    """A valid chat request of exactly `size` bytes (the message pads it)."""

    def request(content: str) -> bytes:
        return orjson.dumps(
            {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": content}]}
        )

    body = request("x" * (size - len(request(""))))
    assert len(body) == size
    return body


@pytest.mark.parametrize(
    ("path", "model", "headers"),
    [
        ("/v1/chat/completions", "gpt-4o", {"authorization": "Bearer sk"}),
        ("/v1/messages", "claude-sonnet-4-5", {"x-api-key": "sk", "anthropic-version": "2023-06-01"}),
    ],
    ids=["openai", "anthropic"],
)
async def test_the_body_cap_is_configurable_and_answered_413_in_the_client_s_dialect(
    path: str, model: str, headers: dict[str, str]
) -> None:
    async with SimulatedProvider("openai") as upstream:
        # The provider's own key: a client's credential is not forwarded across dialects.
        upstream_provider = provider("openai", upstream.base_url, api_key="sk-upstream")
        routes = config_text({"p": upstream_provider}, [limits_alternative_rule(["p"])])
        async with running_sidecar(routes, max_body_bytes=CAP) as running:
            async with httpx.AsyncClient(base_url=running.url, headers=headers, timeout=5) as client:
                at_cap = await client.post(path, content=body_of(CAP, model))
                over = await client.post(path, content=body_of(CAP + 1, model))

    assert at_cap.status_code == 200
    assert over.status_code == 413
    error = over.json()
    if path == "/v1/messages":
        assert error["type"] == "error"
        assert error["error"]["type"] == "request_too_large"
    else:
        assert error["error"]["type"] == "invalid_request_error"
        assert "type" not in error, "the OpenAI shape only"
    assert f"larger than {CAP} bytes" in error["error"]["message"]
    assert len(upstream.requests) == 1, "only the request within the cap went upstream"


def test_the_default_body_cap_is_32_mib() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024
