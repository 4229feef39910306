"""`detour.v1.Gateway`: the raw proxy and the typed chat, a thin shell over the same `Router.route`
the HTTP API calls (docs/grpc.md).

Every call runs through `_Call.run`, which owns what the four methods share: the SERVER span of
the call (telemetry's `start_rpc`, ended with the status code actually sent, after the last
message), the client's deadline (it bounds the upstream attempts: `asyncio.timeout` around the
whole call, so a deadline passing cancels the upstream request and ends DEADLINE_EXCEEDED), and
turning failures into a status with details (`status.py`). Streams are written with
`context.write` from the handler's own coroutine rather than yielded from a generator, so a client
cancelling the call cancels the very `await` that reads the upstream, and the upstream stream is
closed at once (as the HTTP ingress does on a disconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import orjson

from sidecar.config.models import DEFAULT_MAX_RESPONSE_BYTES
from sidecar.dialects import Dialect
from sidecar.dialects.errors import render_error
from sidecar.dialects.inbound import parse_request
from sidecar.errors import DetourError, RequestError
from sidecar.ingress.errors import error_response
from sidecar.ingress.grpc._generated import gateway_pb2 as pb
from sidecar.ingress.grpc._generated import gateway_pb2_grpc
from sidecar.ingress.grpc.headers import client_headers
from sidecar.ingress.grpc.runtime import Runtime
from sidecar.ingress.grpc.status import (
    RpcFailure,
    failure_for,
    failure_for_answer,
    rich_status,
    stream_failure,
)
from sidecar.ingress.grpc.typed import TypedStream, chat_body, chat_response, pick_dialect
from sidecar.providers.client import ClientHeaders
from sidecar.routing.events import RequestTrace
from sidecar.routing.exchange import InboundRequest, RoutedResponse
from sidecar.routing.failover import Router
from sidecar.routing.strategies import Candidate

log = logging.getLogger("detour.grpc")

SERVICE = "detour.v1.Gateway"
_DIALECTS = {"openai": Dialect.OPENAI, "anthropic": Dialect.ANTHROPIC}
_JSON = "application/json"
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
T = TypeVar("T")
Context = Any  # grpc.aio.ServicerContext: grpc ships no type information


class Failed(Exception):
    """Ends the call with this failure's status and details."""

    def __init__(self, failure: RpcFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class Gateway(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, runtime: Runtime, *, max_body_bytes: int) -> None:
        self._runtime = runtime
        self._max_body_bytes = max_body_bytes  # a ProxyRequest.body beyond: 413, as over HTTP

    async def Proxy(self, request: pb.ProxyRequest, context: Context) -> pb.ProxyResponse:
        dialect = _DIALECTS.get(request.dialect)
        call = _Call(self._runtime.router, context, "Proxy", dialect or Dialect.OPENAI, request.headers)

        async def proxy(trace: RequestTrace | None) -> pb.ProxyResponse:
            known = _known(dialect, request)
            routed = await call.route_raw(known, request.body, trace, self._max_body_bytes)
            if isinstance(routed, pb.ProxyResponse):
                return routed
            headers = _response_headers(routed)
            if routed.stream is None:
                headers["content-type"] = routed.content_type or _JSON
                served = _served(routed)
                return pb.ProxyResponse(
                    status=routed.status, headers=headers, body=routed.body, served=served
                )
            # A body that asked for a stream, through the unary call: the whole SSE body, once
            # complete, held to the serving provider's cap on a whole answer (docs/architecture.md §8).
            parts: list[bytes] = []
            size, cap = 0, call.answer_cap(routed.provider_id)
            try:
                async for data in routed.stream:
                    size += len(data)
                    if size > cap:
                        message = f"the streamed answer is larger than {cap} bytes: use ProxyStream"
                        raise Failed(
                            RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, message, "ANSWER_TOO_LARGE")
                        )
                    parts.append(data)
            finally:
                await _close(routed)
            failure = stream_failure(known, parts[-1] if parts else b"")
            if failure is not None:
                raise Failed(failure)  # never OK for a truncated answer: a 200 would hide it
            headers.update(_SSE_HEADERS)
            body = b"".join(parts)
            return pb.ProxyResponse(status=routed.status, headers=headers, body=body, served=_served(routed))

        return await call.run(proxy)

    async def ProxyStream(self, request: pb.ProxyRequest, context: Context) -> None:
        dialect = _DIALECTS.get(request.dialect)
        call = _Call(self._runtime.router, context, "ProxyStream", dialect or Dialect.OPENAI, request.headers)

        async def proxy_stream(trace: RequestTrace | None) -> None:
            known = _known(dialect, request)
            routed = await call.route_raw(known, request.body, trace, self._max_body_bytes)
            if isinstance(routed, pb.ProxyResponse):  # Detour's own error, as the HTTP API sends it
                error = pb.ProxyChunk(data=routed.body, status=routed.status, headers=routed.headers)
                await context.write(error)
                return
            headers = _response_headers(routed)
            if routed.stream is None:  # a whole answer: a body without "stream": true, or a 4xx
                headers["content-type"] = routed.content_type or _JSON
                whole = pb.ProxyChunk(data=routed.body, status=routed.status, headers=headers)
                whole.served.CopyFrom(_served(routed))
                await context.write(whole)
                return
            headers.update(_SSE_HEADERS)
            opening = pb.ProxyChunk(status=routed.status, headers=headers)
            opening.served.CopyFrom(_served(routed))
            first: pb.ProxyChunk | None = opening
            last = b""
            try:
                async for data in routed.stream:
                    chunk, first = first or pb.ProxyChunk(), None
                    chunk.data = last = data
                    await context.write(chunk)
            finally:
                await _close(routed)
            failure = stream_failure(known, last)
            if failure is not None:
                raise Failed(failure)

        await call.run(proxy_stream)

    async def Chat(self, request: pb.ChatRequest, context: Context) -> pb.ChatResponse:
        call = _Call(self._runtime.router, context, "Chat", Dialect.OPENAI)

        async def chat(trace: RequestTrace | None) -> pb.ChatResponse:
            routed, dialect = await call.route_typed(request, trace, stream=False)
            if routed.status >= 400:
                raise Failed(failure_for_answer(routed.status, routed.body, routed.provider_id))
            answer = orjson.loads(routed.body)
            response = chat_response(dialect, answer, created=call.now())
            response.served.CopyFrom(_served(routed))
            return response

        return await call.run(chat)

    async def ChatStream(self, request: pb.ChatRequest, context: Context) -> None:
        call = _Call(self._runtime.router, context, "ChatStream", Dialect.OPENAI)

        async def chat_stream(trace: RequestTrace | None) -> None:
            routed, dialect = await call.route_typed(request, trace, stream=True)
            if routed.stream is None:
                await _close(routed)
                raise Failed(failure_for_answer(routed.status, routed.body, routed.provider_id))
            reader = TypedStream(dialect, created=call.now())
            served: pb.Served | None = _served(routed)
            try:
                async for data in routed.stream:
                    for chunk in reader.feed(data):
                        if served is not None:
                            chunk.served.CopyFrom(served)
                            served = None
                        await context.write(chunk)
            finally:
                await _close(routed)
            if reader.error is not None or not reader.complete:
                message = reader.error or "the provider's stream ended before the answer was complete"
                raise Failed(RpcFailure(grpc.StatusCode.UNAVAILABLE, message, "STREAM_BROKEN"))

        await call.run(chat_stream)


class _Call:
    """One Gateway call: its client headers, span, deadline and how it ends."""

    __slots__ = ("_context", "_metadata", "_router", "headers", "method")

    def __init__(
        self,
        router: Router,
        context: Context,
        method: str,
        dialect: Dialect,
        extra_headers: Any = None,
    ) -> None:
        self._router = router
        self._context = context
        self._metadata = context.invocation_metadata()
        self.method = method
        self.headers: ClientHeaders = client_headers(dialect, self._metadata, extra_headers)

    def now(self) -> int:
        return int(self._router.clock.wall())

    def answer_cap(self, provider_id: str) -> int:
        table = self._router.table
        provider = table.providers.get(provider_id) if table is not None else None
        return provider.max_response_bytes if provider is not None else DEFAULT_MAX_RESPONSE_BYTES

    async def run(self, work: Callable[[RequestTrace | None], Awaitable[T]]) -> T:
        tracing = self._router.tracing
        trace = tracing.start_rpc(SERVICE, self.method, self.headers) if tracing is not None else None
        code = grpc.StatusCode.OK
        try:
            try:
                async with asyncio.timeout(self._context.time_remaining()):
                    return await work(trace)
            except Failed as exc:
                failure = exc.failure
            except TimeoutError:
                failure = RpcFailure(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the call's deadline passed before the answer was complete",
                    "DEADLINE_EXCEEDED",
                )
            except DetourError as exc:
                failure = failure_for(exc)
            except asyncio.CancelledError:
                # The client cancelled, or its deadline passed first in grpc's own timer.
                past = (self._context.time_remaining() or 1.0) <= 0
                code = grpc.StatusCode.DEADLINE_EXCEEDED if past else grpc.StatusCode.CANCELLED
                raise
            except Exception:
                log.exception("unexpected error in %s/%s", SERVICE, self.method)
                failure = RpcFailure(grpc.StatusCode.INTERNAL, "internal error in the sidecar", "INTERNAL")
            code = failure.code
            status = rich_status(failure)
            await self._context.abort(status.code, status.details, status.trailing_metadata)
            raise AssertionError("abort returned")  # pragma: no cover - abort always raises
        finally:
            if trace is not None:
                trace.end(code.value[0])

    async def route_raw(
        self, dialect: Dialect, raw: bytes, trace: RequestTrace | None, max_body_bytes: int
    ) -> RoutedResponse | pb.ProxyResponse:
        """The body routed exactly as the HTTP API routes it; Detour's own error comes back as
        the HTTP API would answer it (status, headers, body in the client's dialect)."""
        try:
            if len(raw) > max_body_bytes:
                raise RequestError(f"the request body is larger than {max_body_bytes} bytes", status=413)
            parsed = parse_request(dialect, raw)
            request = InboundRequest(dialect, parsed.body, raw, parsed.model, parsed.stream, self.headers)
            return await self._router.route(request, trace)
        except DetourError as exc:
            status, headers, body = error_response(dialect, exc)
        except Exception:
            log.exception("unexpected error while routing %s/%s", SERVICE, self.method)
            status, headers, body = 500, [], render_error(dialect, 500, "internal error in the sidecar")
        return pb.ProxyResponse(status=status, headers={**dict(headers), "content-type": _JSON}, body=body)

    async def route_typed(
        self, request: pb.ChatRequest, trace: RequestTrace | None, *, stream: bool
    ) -> tuple[RoutedResponse, Dialect]:
        """The typed request built in the dialect of the candidate expected to serve it, routed."""
        router = self._router
        table = router.table
        now = router.clock.monotonic()

        def limited(candidate: Candidate) -> bool:
            return router.limits.blocked_until(candidate.provider_id, candidate.model, now) is not None

        dialect = pick_dialect(table, request.model, limited)
        default_max_tokens = table.loaded.config.routing.default_max_tokens if table is not None else 4096
        dialect, body = chat_body(request, dialect, stream=stream, default_max_tokens=default_max_tokens)
        # Which headers are forwarded (`anthropic-version`, `openai-organization`) depends on it.
        headers = client_headers(dialect, self._metadata)
        inbound = InboundRequest(dialect, body, orjson.dumps(body), request.model, stream, headers)
        return await router.route(inbound, trace), dialect


def _known(dialect: Dialect | None, request: pb.ProxyRequest) -> Dialect:
    if dialect is None:
        # No dialect, no shape to answer in: the one Proxy error that is a status code.
        raise Failed(
            RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"dialect must be 'openai' or 'anthropic', not {request.dialect!r}",
                "INVALID_REQUEST",
                metadata={"param": "dialect"},
            )
        )
    return dialect


def _served(routed: RoutedResponse) -> pb.Served:
    return pb.Served(provider=routed.provider_id, model=routed.model, attempts=routed.attempts)


def _response_headers(routed: RoutedResponse) -> dict[str, str]:
    """What the HTTP API's response headers say (docs/architecture.md §3, "Response headers")."""
    headers = dict(routed.headers)
    headers["x-detour-provider"] = routed.provider_id
    headers["x-detour-model"] = routed.model
    headers["x-detour-attempts"] = str(routed.attempts)
    return headers


async def _close(routed: RoutedResponse) -> None:
    """Release the upstream stream and its connection, whether or not it was read to its end."""
    if routed.stream is not None:
        await routed.stream.aclose()
    if routed.release is not None:
        await routed.release()
