"""One configured provider: where to send, with which credential and headers, within which timeouts.

Credentials follow docs/architecture.md §4: a provider with its own `api_key` always uses it and never sees
the client's; without one, the client's credential goes only to providers of the client's own dialect.
Only an allow-list of client headers is forwarded, so SDK telemetry headers and cookies stay home.
Every response it returns reads at most the provider's `max_response_bytes` when read whole.
The client's W3C trace context is kept aside (never forwarded as is): telemetry makes it the
parent of the request's span and sends each upstream request its own attempt's context instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecar.config.models import ProviderConfig, ProviderType
from sidecar.providers.http import Timeouts, Transport, UpstreamRequest, UpstreamResponse

ANTHROPIC_VERSION = "2023-06-01"

_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
# How the request is framed and carried is the transport's, never the config's: a configured
# `Transfer-Encoding: chunked` next to the transport's `Content-Length` would be a malformed request.
_FRAMING_HEADERS = frozenset(
    {"content-length", "host", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "expect"}
)
# Non-secret headers that change how the provider answers; forwarded within the same dialect.
_DIALECT_HEADERS = {
    ProviderType.OPENAI: frozenset({"openai-organization", "openai-project"}),
    ProviderType.ANTHROPIC: frozenset({"anthropic-version", "anthropic-beta"}),
}


@dataclass(frozen=True, slots=True)
class ClientHeaders:
    """The headers of an inbound request that may matter upstream, already filtered."""

    dialect: ProviderType
    credential: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    traceparent: str | None = None  # raw W3C trace context from the client, for telemetry only
    tracestate: str | None = None

    @classmethod
    def from_asgi(cls, dialect: ProviderType, raw_headers: Sequence[tuple[bytes, bytes]]) -> ClientHeaders:
        credential: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        traceparent = tracestate = None
        interesting = _INTERESTING[dialect]
        # ASGI header names arrive lower-cased; SDKs send a dozen headers, and only the few we
        # forward are decoded.
        for raw_name, raw_value in raw_headers:
            kind = interesting.get(raw_name)
            if kind is None:
                continue
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if kind == "credential":
                credential.append((name, value))
            elif kind == "option":
                options.append((name, value))
            elif name == "traceparent":
                traceparent = value
            else:
                tracestate = value
        return cls(dialect, tuple(credential), tuple(options), traceparent, tracestate)


_INTERESTING = {
    dialect: {
        **{name.encode(): "credential" for name in _CREDENTIAL_HEADERS},
        **{name.encode(): "option" for name in _DIALECT_HEADERS[dialect]},
        **{name.encode(): "trace" for name in _TRACE_HEADERS},
    }
    for dialect in ProviderType
}


class ProviderClient:
    """Builds and sends requests for one provider id over its own pooled transport."""

    def __init__(self, provider_id: str, config: ProviderConfig, transport: Transport) -> None:
        self.provider_id = provider_id
        self.config = config
        self.dialect = config.type
        self._transport = transport
        base = config.effective_base_url
        if self.dialect is ProviderType.ANTHROPIC:
            self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        else:
            self.url = base + "/chat/completions"
        self._own_credential = config.api_key is not None or any(
            name.lower() in _CREDENTIAL_HEADERS for name in config.headers
        )
        self._static_headers = self._build_static_headers(config)
        self._timeouts = Timeouts(connect_s=config.connect_timeout_secs, read_s=config.timeout_secs)
        self._address: tuple[str, int] | None = None
        self._in_flight = 0
        self._retired = False
        self._closing: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) for telemetry's server.address / server.port (never the URL's credentials)."""
        if self._address is None:
            parts = urlsplit(self.url)
            self._address = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        return self._address

    def headers_for(self, client: ClientHeaders) -> list[tuple[str, str]]:
        headers = list(self._static_headers)
        same_dialect = client.dialect is self.dialect
        if not self._own_credential and same_dialect:
            headers.extend(client.credential)
        if same_dialect:
            headers.extend(client.options)
        if self.dialect is ProviderType.ANTHROPIC and not (
            same_dialect and _has(client.options, "anthropic-version")
        ):
            headers.append(("anthropic-version", ANTHROPIC_VERSION))
        return headers

    async def send(
        self, body: bytes, client: ClientHeaders, extra_headers: Sequence[tuple[str, str]] = ()
    ) -> UpstreamResponse:
        """`extra_headers`: per-attempt headers from the router (the attempt's trace context)."""
        headers = self.headers_for(client)
        if extra_headers:
            headers.extend(extra_headers)
        request = UpstreamRequest(url=self.url, headers=headers, content=body)
        self._in_flight += 1
        try:
            response = await self._transport.send(request, self._timeouts)
        except BaseException:
            self._finished()
            raise
        response.when_closed(self._finished)
        response.max_body_bytes = self.config.max_response_bytes
        return response

    def retire(self) -> None:
        """A reload replaced this provider's settings: close the pool once in-flight requests end."""
        self._retired = True
        if self._in_flight == 0:
            self._close_soon()

    async def close(self) -> None:
        await self._transport.close()
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """After `retire`: until the pool has been closed, which waits for in-flight requests."""
        await self._closed.wait()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._retired and self._in_flight == 0:
            self._close_soon()

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    def _build_static_headers(self, config: ProviderConfig) -> list[tuple[str, str]]:
        headers = [("content-type", "application/json"), ("accept-encoding", "identity")]
        if config.api_key is not None:
            if self.dialect is ProviderType.ANTHROPIC:
                headers.append(("x-api-key", config.api_key))
            else:
                headers.append(("authorization", f"Bearer {config.api_key}"))
        # A credential in `headers:` (a gateway's Authorization, say) counts as the provider's own:
        # it is sent, and the client's is not. `api_key`, when also set, wins over it.
        reserved = {"content-type", "accept-encoding", *_FRAMING_HEADERS}
        if config.api_key is not None:
            reserved |= _CREDENTIAL_HEADERS
        headers.extend(
            (name, value) for name, value in config.headers.items() if name.lower() not in reserved
        )
        return headers


def _has(headers: Sequence[tuple[str, str]], name: str) -> bool:
    return any(key == name for key, _ in headers)
