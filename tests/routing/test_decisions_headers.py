"""The provider's headers Detour passes on (`x-request-id`, `request-id`) reach the client byte for
byte, and Detour's own headers can never break or split the response."""

from __future__ import annotations

import httpx
import pytest

from sidecar.providers.http import UpstreamRequest
from tests.support.memory_transport import Upstreams, in_memory_detour, openai_at, reply
from tests.support.running import config_text, limits_alternative_rule

ONE = config_text({"primary": openai_at("primary")}, [limits_alternative_rule(["primary"], [])])


def with_request_id(value: bytes) -> object:
    answer = reply()

    def handle(request: UpstreamRequest) -> httpx.Response:
        response = answer(request)
        assert isinstance(response, httpx.Response)
        raw = [(name, v) for name, v in response.headers.raw if name.lower() != b"x-request-id"]
        raw.append((b"x-request-id", value))
        return httpx.Response(response.status_code, headers=raw, stream=response.stream)

    return handle


@pytest.mark.parametrize("value", [b"req-123", b"req-\xc3\xa9\xe2\x82\xac", b"req \xe6\x97\xa5\xe6\x9c\xac"])
async def test_a_providers_request_id_reaches_the_client_as_the_provider_sent_it(value: bytes) -> None:
    async with in_memory_detour(ONE, Upstreams(primary=with_request_id(value))) as detour:
        response = await detour.chat()

    assert response.status_code == 200
    assert dict(response.headers.raw)[b"x-request-id"] == value, "not percent-encoded, not re-encoded"


async def test_a_model_name_with_control_characters_cannot_split_the_response() -> None:
    async with in_memory_detour(ONE, Upstreams(primary=reply())) as detour:
        response = await detour.chat("gpt\r\nx-injected: 1")

    assert response.status_code == 200
    assert "x-injected" not in response.headers
    assert response.headers["x-detour-model"] == "gpt%0D%0Ax-injected: 1"
