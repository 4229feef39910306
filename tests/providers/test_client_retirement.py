"""A provider client replaced by a reload keeps serving its in-flight requests, then closes."""

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
