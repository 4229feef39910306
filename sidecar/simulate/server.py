"""`SimulatedProvider`: a real HTTP server on 127.0.0.1 that answers like OpenAI or Anthropic.

End-to-end tests, `detour demo` and the benchmarks point Detour (and the official SDKs) at it. This
is the one module of the layer that does I/O: it records each request, checks auth and the body the
way the real API would, consults the optional `WindowLimiter`, then performs the next scripted
behaviour (or `default`) using the pure dialect modules for every byte it sends.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from aiohttp import web

from sidecar.simulate.anthropic_api import AnthropicDialect
from sidecar.simulate.behaviours import (
    Behaviour,
    CutStream,
    Delay,
    ErrorReply,
    Hang,
    MalformedEvent,
    RateLimit,
    Reply,
    ResetConnection,
    ServerError,
    SlowStream,
)
from sidecar.simulate.limiter import WindowLimiter, WindowState
from sidecar.simulate.openai_api import OpenAIDialect
from sidecar.simulate.wire import Answer, Completion, Dialect

DialectName = Literal["openai", "anthropic"]
_DIALECTS: dict[str, type[OpenAIDialect] | type[AnthropicDialect]] = {
    "openai": OpenAIDialect,
    "anthropic": AnthropicDialect,
}
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass(slots=True)
class RecordedRequest:
    """One request to the completion endpoint, as received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was empty or malformed
    at: float  # time.monotonic() on arrival


class SimulatedProvider:
    """A scriptable upstream speaking one dialect. Use as `async with SimulatedProvider(...) as sim:`.

    Per request, in order: record it; 401 without a credential (or not `api_key`, when set); 400 for a
    body or headers the real API would reject (these consume nothing); 429 when the limiter's window
    is full; otherwise the next behaviour from `script(...)`, or `default` when the script is empty.
    """

    def __init__(
        self,
        dialect: DialectName,
        *,
        name: str = "sim",
        reply_text: str = "Hello from the simulated provider.",
        model: str | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if dialect not in _DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; expected 'openai' or 'anthropic'")
        self.dialect: DialectName = dialect
        self.name = name
        self.reply_text = reply_text
        self.model = model
        self.api_key = api_key
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.default: Behaviour = Reply()
        self._wire: Dialect = _DIALECTS[dialect]()
        self._script: deque[Behaviour] = deque()
        self._limiter: WindowLimiter | None = None
        self._arrived = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"SimulatedProvider({self.dialect!r}, name={self.name!r}, {where})"

    # --- scripting -------------------------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, consumed one per request; `default` answers once they run out."""
        self._script.extend(behaviours)

    def set_limiter(self, limiter: WindowLimiter | None) -> None:
        self._limiter = limiter

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the API)
        """Return once at least `count` requests have been recorded; TimeoutError after `timeout` s."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests) >= count)
        except TimeoutError:
            got = len(self.requests)
            raise TimeoutError(f"{self.name}: {got} of {count} requests arrived within {timeout} s") from None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """What to pass as the official SDK's `base_url` (OpenAI's includes `/v1`, Anthropic's not)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self._wire.base_path}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{self.name} is already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(self._wire.endpoint, self._on_completion)
        app.router.add_get("/v1/models", self._on_models)
        app.router.add_route("*", "/{tail:.*}", self._on_unknown)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._stopping = asyncio.Event()
        try:
            await web.TCPSite(runner, self.host, self._requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the listener and every connection; hanging and delayed requests are dropped."""
        if self._runner is None:
            return
        self._stopping.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> SimulatedProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- handlers --------------------------------------------------------------------------------

    async def _on_completion(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        raw = await request.read()
        body: Any = None
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.requests.append(RecordedRequest(request.method, request.path, headers, body, at))
        async with self._arrived:
            self._arrived.notify_all()

        rejection = self._wire.authenticate(headers, self.api_key) or self._wire.validate(headers, body)
        if rejection is not None:
            return _json_response(rejection)
        model = self.model or body["model"]
        limits: WindowState | None = None
        if self._limiter is not None:
            limits = self._limiter.acquire()
            if not limits.admitted:
                full = RateLimit(retry_after=limits.retry_after, reset_after_s=limits.reset_in)
                return _json_response(self._wire.rate_limited(full, model, limit=limits.limit))
        behaviour = self._script.popleft() if self._script else self.default
        return await self._perform(request, behaviour, body, model, limits)

    async def _on_models(self, request: web.Request) -> web.StreamResponse:
        headers = {key.lower(): value for key, value in request.headers.items()}
        rejection = self._wire.authenticate(headers, self.api_key)
        return _json_response(rejection or self._wire.models(self.model))

    async def _on_unknown(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self._wire.not_found(request.method, request.path))

    # --- behaviours ------------------------------------------------------------------------------

    async def _perform(
        self,
        request: web.Request,
        behaviour: Behaviour,
        body: dict[str, Any],
        model: str,
        limits: WindowState | None,
    ) -> web.StreamResponse:
        match behaviour:
            case Reply():
                return await self._send(
                    request, self._wire.complete(self._completion(behaviour, body, model, limits))
                )
            case RateLimit():
                return _json_response(self._wire.rate_limited(behaviour, model))
            case ServerError():
                return _json_response(self._wire.server_error(behaviour))
            case ErrorReply():
                return _json_response(self._wire.error(behaviour))
            case Delay(seconds=seconds, then=then):
                if await self._stopped_within(seconds):
                    return _dropped(request, reset=False)
                return await self._perform(request, then, body, model, limits)
            case CutStream(reply=reply):
                completion = self._completion(reply or Reply(), body, model, limits)
                return await self._send(request, self._wire.complete(completion), cut=behaviour)
            case SlowStream(reply=reply):
                completion = self._completion(reply or Reply(), body, model, limits)
                return await self._send(request, self._wire.complete(completion), slow=behaviour)
            case MalformedEvent(reply=reply, after_events=after, garbage=garbage):
                answer = self._wire.complete(self._completion(reply or Reply(), body, model, limits))
                if answer.events is not None:
                    answer = replace(answer, events=[*answer.events[:after], garbage, *answer.events[after:]])
                return await self._send(request, answer)
            case Hang():
                await self._stopping.wait()
                return _dropped(request, reset=False)
            case ResetConnection():
                return _dropped(request, reset=True)
        raise TypeError(f"not a simulator behaviour: {behaviour!r}")

    def _completion(
        self, reply: Reply, body: dict[str, Any], model: str, limits: WindowState | None
    ) -> Completion:
        text = reply.text if reply.text is not None else (None if reply.tool_call else self.reply_text)
        return Completion(reply, text, model, body, limits)

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _send(
        self,
        request: web.Request,
        answer: Answer,
        cut: CutStream | None = None,
        slow: SlowStream | None = None,
    ) -> web.StreamResponse:
        if cut is None and answer.events is None:
            return _json_response(answer)
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        if answer.events is None:  # a cut non-streaming reply: announce the whole body, send half
            payload = orjson.dumps(answer.body)
            response.content_type = "application/json"
            response.content_length = len(payload)
            chunks = [payload[: len(payload) // 2]]
        else:
            response.content_type = "text/event-stream"
            response.charset = "utf-8"
            response.headers["cache-control"] = "no-cache"
            chunks = answer.events if cut is None else answer.events[: cut.after_events]
        try:
            await response.prepare(request)
            for index, chunk in enumerate(chunks):
                if slow is not None and await self._stopped_within(_delay_before(slow, index)):
                    return _dropped(request, reset=False, response=response)
                await response.write(chunk)
            if cut is None or (cut.how == "end" and answer.events is not None):
                await response.write_eof()
                return response
        except ConnectionError:  # the client went away mid-answer: nothing left to do
            return response
        if cut.how == "hang":
            await self._stopping.wait()
        return _dropped(request, reset=cut.how == "reset", response=response)


def _delay_before(slow: SlowStream, index: int) -> float:
    delay = slow.first_event_delay_s if index == 0 else slow.between_events_s
    if slow.stall_after_events is not None and index == slow.stall_after_events:
        delay += slow.stall_s
    return delay


def _json_response(answer: Answer) -> web.Response:
    headers = {"content-type": "application/json", **answer.headers}
    return web.Response(status=answer.status, headers=headers, body=orjson.dumps(answer.body))


def _dropped(
    request: web.Request, *, reset: bool, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the connection (FIN after what was written, or RST) and give aiohttp a response to drop."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        else:
            transport.close()
    return response if response is not None else web.Response()
