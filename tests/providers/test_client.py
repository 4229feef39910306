"""A provider client: retiring after a reload without cutting in-flight requests, and credentials."""

from __future__ import annotations

import httpx

from sidecar.config.models import ProviderConfig, ProviderType
from sidecar.providers.client import ClientHeaders, ProviderClient
from sidecar.providers.http import Timeouts, UpstreamRequest, UpstreamResponse


class CountingTransport:
    def __init__(self) -> None:
        self.closed = 0

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        return UpstreamResponse(httpx.Response(200, content=b"{}"))

    async def close(self) -> None:
        self.closed += 1


async def test_a_retired_client_closes_only_after_its_last_in_flight_response() -> None:
    transport = CountingTransport()
    client = ProviderClient("p", ProviderConfig(type=ProviderType.OPENAI, api_key="k"), transport)
    headers = ClientHeaders(ProviderType.OPENAI)
    first = await client.send(b"{}", headers)
    second = await client.send(b"{}", headers)

    client.retire()
    await first.close()
    assert transport.closed == 0, "a stream is still open on the old pool"
    await second.close()
    await second.close()  # closing twice must not count twice
    await client.wait_closed()

    assert transport.closed == 1


async def test_a_retired_idle_client_closes_at_once() -> None:
    transport = CountingTransport()
    client = ProviderClient("p", ProviderConfig(type=ProviderType.OPENAI), transport)
    client.retire()
    await client.wait_closed()
    assert transport.closed == 1


def test_a_credential_in_the_configured_headers_replaces_the_clients() -> None:
    config = ProviderConfig(type=ProviderType.OPENAI, headers={"Authorization": "Bearer gateway-key"})
    client = ProviderClient("gw", config, CountingTransport())
    sent = client.headers_for(
        ClientHeaders(ProviderType.OPENAI, credential=(("authorization", "Bearer sk-user"),))
    )
    assert ("Authorization", "Bearer gateway-key") in sent
    assert all("sk-user" not in value for _, value in sent)


def test_api_key_wins_over_a_credential_in_the_configured_headers() -> None:
    config = ProviderConfig(
        type=ProviderType.OPENAI, api_key="sk-configured", headers={"Authorization": "Bearer x"}
    )
    sent = ProviderClient("p", config, CountingTransport()).headers_for(ClientHeaders(ProviderType.OPENAI))
    assert [value for name, value in sent if name.lower() == "authorization"] == ["Bearer sk-configured"]


def test_configured_headers_never_set_the_requests_framing_or_encoding() -> None:
    framing = {
        "Transfer-Encoding": "chunked",
        "Content-Length": "3",
        "Host": "elsewhere",
        "Connection": "close",
        "Expect": "100-continue",
        "Content-Type": "text/plain",
        "Accept-Encoding": "gzip",
    }
    config = ProviderConfig(type=ProviderType.OPENAI, headers={**framing, "X-Gateway": "1"})
    sent = ProviderClient("p", config, CountingTransport()).headers_for(ClientHeaders(ProviderType.OPENAI))

    assert ("X-Gateway", "1") in sent
    assert all(name not in framing for name, _ in sent)
    assert [value for name, value in sent if name == "accept-encoding"] == ["identity"]
    assert [value for name, value in sent if name == "content-type"] == ["application/json"]
