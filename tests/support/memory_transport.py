"""An in-memory upstream behind the sidecar's transport seam, like httpx's `MockTransport`.

`MemoryTransport(handler)` satisfies `sidecar.providers.http.Transport`: `send` calls
`handler(request: UpstreamRequest)` (sync or async), which returns an `httpx.Response`, and hands the
router the real `UpstreamResponse` around it. A body can be scripted part by part (`sse(...)`):
bytes are sent, a `Stall` waits on an `asyncio.Event` the test controls, an exception instance is
raised there (a cut), and the end of the parts is a clean end. Exceptions are mapped the way the
real transport maps them (`_mapped_errors` in `sidecar/providers/http.py`): before the response,
a timeout is `UpstreamTimeout` and a lost connection `UpstreamConnectError`; after it,
`UpstreamResponse` itself maps a broken body to `UpstreamStreamError`.

`Upstreams` gives every configured provider its own host (`http://primary.test/v1`), logs every
request in order and dispatches it to that provider's handler, so a test asserts what each
provider received. The answer builders (`reply`, `rate_limit`, `server_error`, `error`,
`streamed`) speak each API's real wire shapes, reusing the pure dialect modules of
`sidecar.simulate`; they read the dialect, model and `stream` flag from the request they answer.

`in_memory_detour` runs a whole `Sidecar` over these transports with a `FakeClock`, driven through
its ASGI app in-process (no sockets), and yields a small client for the chat endpoints and
`/admin/state`. Only stable surfaces are used: `Sidecar`, `load_config_text`, the transport seam and
HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias, cast
from urllib.parse import urlsplit

import httpx
import orjson

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from sidecar.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from sidecar.providers.http import Timeouts, UpstreamRequest, UpstreamResponse
from sidecar.simulate.anthropic_api import AnthropicDialect
from sidecar.simulate.behaviours import ErrorReply, RateLimit, Reply, ServerError, ToolCall
from sidecar.simulate.openai_api import OpenAIDialect
from sidecar.simulate.openai_api import limit_headers as _openai_limit_headers
from sidecar.simulate.wire import Answer, Completion
from sidecar.simulate.wire import Dialect as SimulatedDialect
from tests.support.running import FakeClock

Handler: TypeAlias = Callable[[UpstreamRequest], httpx.Response | Awaitable[httpx.Response]]

# --- scripted bodies -------------------------------------------------------------------------------


@dataclass(eq=False)
class Stall:
    """A point where the upstream goes silent until the test sets `go`; never set, it stalls until
    the router gives up (its timeout cancels the wait). `reached` is set when the stall begins."""

    go: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self) -> None:
        self.reached.set()
        await self.go.wait()


Part: TypeAlias = bytes | Stall | BaseException


class ScriptedBody(httpx.AsyncByteStream):
    """A response body played from parts: bytes are sent, a `Stall` waits, an exception is raised."""

    def __init__(self, parts: Iterable[Part]) -> None:
        self.parts = list(parts)
        self.sent = 0  # parts played so far
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.sent += 1
            if isinstance(part, Stall):
                await part.wait()
            elif isinstance(part, BaseException):
                raise part
            else:
                yield part

    async def aclose(self) -> None:
        self.closed = True


def connection_reset() -> httpx.ReadError:
    """What a TCP reset mid-body looks like from the HTTP client."""
    return httpx.ReadError("[Errno 104] Connection reset by peer")


def connection_closed() -> httpx.RemoteProtocolError:
    """What a connection closed mid-body looks like from the HTTP client."""
    return httpx.RemoteProtocolError("peer closed connection without sending complete message body")


# --- the transport ---------------------------------------------------------------------------------


class _TrackedResponse(UpstreamResponse):
    """The real `UpstreamResponse`, also telling its transport when the router closed it."""

    def __init__(self, response: httpx.Response, closed: Callable[[UpstreamResponse], None]) -> None:
        super().__init__(response)
        self._report_closed = closed

    async def close(self) -> None:
        await super().close()
        self._report_closed(self)


class MemoryTransport:
    """`Transport` that answers from `handler`; records each request, its timeouts and every
    response not yet closed (a response left open is a connection the router never released)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[UpstreamRequest] = []
        self.timeouts: list[Timeouts] = []
        self.open: list[UpstreamResponse] = []
        self.closed = False

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        self.requests.append(request)
        self.timeouts.append(timeouts)
        try:
            answer = self._handler(request)
            response = await answer if inspect.isawaitable(answer) else answer
        except (UpstreamError, asyncio.CancelledError):
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise UpstreamConnectError(f"upstream connection failed: {type(exc).__name__}: {exc}") from exc
        tracked = _TrackedResponse(response, self._closed)
        self.open.append(tracked)
        return tracked

    def _closed(self, response: UpstreamResponse) -> None:
        if response in self.open:
            self.open.remove(response)

    async def close(self) -> None:
        self.closed = True


# --- what a request says ---------------------------------------------------------------------------


def dialect_of(request: UpstreamRequest) -> str:
    return "anthropic" if urlsplit(request.url).path.endswith("/messages") else "openai"


def body_of(request: UpstreamRequest) -> dict[str, Any]:
    body = orjson.loads(request.content)
    assert isinstance(body, dict)
    return body


def headers_of(request: UpstreamRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers}


def provider_of(request: UpstreamRequest) -> str:
    """The provider name from its test host: `http://primary.test/v1/...` → "primary"."""
    host = urlsplit(request.url).hostname or ""
    return host.removesuffix(".test")


# --- faithful answers ------------------------------------------------------------------------------

_DIALECTS: dict[str, SimulatedDialect] = {"openai": OpenAIDialect(), "anthropic": AnthropicDialect()}


def to_response(answer: Answer) -> httpx.Response:
    """A simulated provider's `Answer` as an httpx response: JSON whole, or SSE events streamed."""
    if answer.events is not None:
        return sse_response(answer.events, status=answer.status, headers=answer.headers)
    content = orjson.dumps(answer.body)
    headers = {"content-type": "application/json", "content-length": str(len(content)), **answer.headers}
    return httpx.Response(answer.status, headers=headers, stream=ScriptedBody([content]))


def sse_response(
    parts: Iterable[Part], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    all_headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    all_headers.update(headers or {})
    return httpx.Response(status, headers=all_headers, stream=ScriptedBody(parts))


def _completion(request: UpstreamRequest, text: str | None, reply: Reply) -> Completion:
    body = body_of(request)
    return Completion(reply, text, str(body.get("model")), body)


def stream_frames(request: UpstreamRequest, text: str | None = "Hello there.", **reply: Any) -> list[bytes]:
    """Every SSE frame the provider would send for this streamed request, answering `text`."""
    answer = _DIALECTS[dialect_of(request)].complete(_completion(request, text, Reply(text=text, **reply)))
    assert answer.events is not None, "stream_frames answers streamed requests only"
    return list(answer.events)


def reply(
    text: str | None = "Hello there.",
    *,
    tool_call: ToolCall | None = None,
    finish: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Handler:
    """A successful answer in the request's dialect, streamed when the request asks for a stream
    (`text=None` with a `tool_call`: the call alone)."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        behaviour = Reply(text=text, tool_call=tool_call, finish_reason=finish, headers=dict(headers or {}))
        return to_response(_DIALECTS[dialect_of(request)].complete(_completion(request, text, behaviour)))

    return handle


def rate_limit(
    retry_after: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    quota: bool = False,
) -> Handler:
    """A 429 in the request's dialect: OpenAI `rate_limit_exceeded` (or `insufficient_quota`), Anthropic
    `rate_limit_error`. Only the headers given are sent (`retry-after` and `headers`), so each test
    chooses which source of the wait the provider offers; see `openai_reset_headers` and
    `anthropic_reset_headers` for the providers' own reset families."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        behaviour = RateLimit(
            retry_after=retry_after, headers=dict(headers or {}), quota=quota, limit_headers=False
        )
        model = str(body_of(request).get("model"))
        return to_response(_DIALECTS[dialect_of(request)].rate_limited(behaviour, model))

    return handle


def server_error(status: int = 500, message: str | None = None) -> Handler:
    """OpenAI `server_error`; Anthropic `api_error`, or `overloaded_error` for 529."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        return to_response(_DIALECTS[dialect_of(request)].server_error(ServerError(status, message)))

    return handle


def error(
    status: int, type_: str, message: str, *, code: str | None = None, param: str | None = None
) -> Handler:
    """Any error status in the request's dialect (OpenAI carries `code` and `param`)."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        behaviour = ErrorReply(status, type_, message, code, param)
        return to_response(_DIALECTS[dialect_of(request)].error(behaviour))

    return handle


def streamed(
    text: str | None = "Hello there.",
    *,
    keep: int | None = None,
    then: Sequence[Part] = (),
    **reply_fields: Any,
) -> Handler:
    """The request's stream answering `text`, cut to its first `keep` frames, followed by `then`
    (an exception: a cut; a `Stall`: a stall; nothing: an early end)."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        frames = stream_frames(request, text, **reply_fields)
        kept: list[Part] = list(frames if keep is None else frames[:keep])
        return sse_response([*kept, *then])

    return handle


def sse(*parts: Part, status: int = 200, headers: Mapping[str, str] | None = None) -> Handler:
    """An SSE response played from exactly these parts."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        return sse_response(parts, status=status, headers=headers)

    return handle


def raises(make: Callable[[], BaseException]) -> Handler:
    """No response at all: the connection fails (or times out) before any header arrives."""

    def handle(request: UpstreamRequest) -> httpx.Response:
        raise make()

    return handle


def silent(stall: Stall, then: Handler | None = None) -> Handler:
    """Accepts the request and sends nothing until the stall is released, then answers with `then`."""

    async def handle(request: UpstreamRequest) -> httpx.Response:
        await stall.wait()
        return await _call(then or reply(), request)

    return handle


class Script:
    """A handler that plays its steps in order, one per request, then `then` for every request after.
    A step is a handler, a ready `httpx.Response` (used once) or an exception instance (raised)."""

    def __init__(self, *steps: Handler | httpx.Response | BaseException, then: Handler | None = None) -> None:
        self.steps = list(steps)
        self.then = then or reply()

    async def __call__(self, request: UpstreamRequest) -> httpx.Response:
        step = self.steps.pop(0) if self.steps else self.then
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return await _call(step, request)


async def _call(handler: Handler, request: UpstreamRequest) -> httpx.Response:
    answer = handler(request)
    return await answer if inspect.isawaitable(answer) else answer


def openai_reset_headers(reset_s: float, *, remaining: int = 0) -> dict[str, str]:
    """OpenAI's x-ratelimit-* family: the requests bucket at `remaining`, resetting in `reset_s`
    (a Go duration such as "6m0s"); the tokens bucket nearly full, resetting at once."""
    return _openai_limit_headers(500, remaining, reset_s)


def anthropic_reset_headers(reset_at: float, *, remaining: int = 0, now: float) -> dict[str, str]:
    """Anthropic's anthropic-ratelimit-* family: the requests bucket at `remaining`, resetting at the
    Unix time `reset_at` (RFC 3339); the token buckets full, resetting `now`."""

    def rfc3339(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": str(remaining),
        "anthropic-ratelimit-requests-reset": rfc3339(reset_at),
    }
    for bucket in ("tokens", "input-tokens", "output-tokens"):
        headers[f"anthropic-ratelimit-{bucket}-limit"] = "400000"
        headers[f"anthropic-ratelimit-{bucket}-remaining"] = "400000"
        headers[f"anthropic-ratelimit-{bucket}-reset"] = rfc3339(now)
    return headers


# --- many providers --------------------------------------------------------------------------------


def openai_at(name: str, **settings: Any) -> dict[str, Any]:
    """Config of an OpenAI-dialect provider served from `http://<name>.test/v1`."""
    return {"type": "openai", "base_url": f"http://{name}.test/v1", **settings}


def anthropic_at(name: str, **settings: Any) -> dict[str, Any]:
    """Config of an Anthropic-dialect provider served from `http://<name>.test`."""
    return {"type": "anthropic", "base_url": f"http://{name}.test", **settings}


class Upstreams:
    """Every provider's handler by name (its test host), and a log of every request in order.

    `Sidecar(transport_factory=upstreams.factory)`: each provider gets its own `MemoryTransport`,
    all of them dispatching here, so handlers can be swapped mid-test (`upstreams["primary"] = ...`).
    A provider without a handler answers `reply()`."""

    def __init__(self, **handlers: Handler) -> None:
        self.handlers: dict[str, Handler] = dict(handlers)
        self.log: list[UpstreamRequest] = []
        self.transports: list[MemoryTransport] = []

    def __setitem__(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    def factory(self) -> MemoryTransport:
        transport = MemoryTransport(self._dispatch)
        self.transports.append(transport)
        return transport

    async def _dispatch(self, request: UpstreamRequest) -> httpx.Response:
        self.log.append(request)
        return await _call(self.handlers.get(provider_of(request), reply()), request)

    def to(self, name: str) -> list[UpstreamRequest]:
        return [request for request in self.log if provider_of(request) == name]

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [body_of(request) for request in self.to(name)]

    @property
    def order(self) -> list[str]:
        """Which provider each upstream request went to, in order."""
        return [provider_of(request) for request in self.log]

    def clear(self) -> None:
        self.log.clear()

    @property
    def unclosed(self) -> list[UpstreamResponse]:
        return [response for transport in self.transports for response in transport.open]


# --- the sidecar, in memory ------------------------------------------------------------------------

OPENAI_AUTH = {"authorization": "Bearer sk-client"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}
PROMPT = [{"role": "user", "content": "Hello"}]
REQUEST_DEADLINE_S = 5.0


@dataclass
class InMemoryDetour:
    sidecar: Sidecar
    http: httpx.AsyncClient
    upstreams: Upstreams
    clock: FakeClock

    async def chat(
        self, model: str = "gpt-4o", *, headers: Mapping[str, str] | None = None, **fields: Any
    ) -> httpx.Response:
        """POST /v1/chat/completions as an OpenAI client with its own key."""
        body = {"model": model, "messages": PROMPT, **fields}
        return await self.request(
            "POST", "/v1/chat/completions", json=body, headers=OPENAI_AUTH if headers is None else headers
        )

    async def messages(
        self, model: str = "claude-sonnet-4-5", *, headers: Mapping[str, str] | None = None, **fields: Any
    ) -> httpx.Response:
        """POST /v1/messages as an Anthropic client with its own key."""
        body = {"model": model, "max_tokens": 64, "messages": PROMPT, **fields}
        return await self.request(
            "POST", "/v1/messages", json=body, headers=ANTHROPIC_AUTH if headers is None else headers
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, bounded: `ASGITransport` ignores client timeouts, and a routing loop that
        never ends must fail its test in seconds rather than hang it."""
        async with asyncio.timeout(REQUEST_DEADLINE_S):
            return await self.http.request(method, path, **kwargs)

    async def state(self) -> dict[str, Any]:
        response = await self.request("GET", "/admin/state")
        assert response.status_code == 200
        state = response.json()
        assert isinstance(state, dict)
        return state

    async def limits(self) -> dict[tuple[str, str | None], dict[str, Any]]:
        """/admin/state's limited candidates by (provider, model)."""
        return {(item["provider"], item["model"]): item for item in (await self.state())["rate_limited"]}

    async def counters(self) -> dict[str, int]:
        counters = (await self.state())["counters"]
        assert isinstance(counters, dict)
        return counters


@contextlib.asynccontextmanager
async def in_memory_detour(
    config: str,
    upstreams: Upstreams,
    *,
    clock: FakeClock | None = None,
    env: Mapping[str, str] | None = None,
    seed: int = 7,
    check_closed: bool = True,
) -> AsyncIterator[InMemoryDetour]:
    """A `Sidecar` with `config`, its providers answered by `upstreams`, time from `clock`.

    On exit it checks that every upstream response the router opened was closed again."""
    clock = clock or FakeClock()
    loaded = load_config_text(config, source="test", env=env or {})
    sidecar = Sidecar(
        loaded, clock=clock.as_clock(), rng=random.Random(seed), transport_factory=upstreams.factory
    )
    transport = httpx.ASGITransport(app=cast(Any, sidecar.asgi))  # ASGI's dict types vs httpx's Mapping
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://detour", timeout=5) as http:
            yield InMemoryDetour(sidecar, http, upstreams, clock)
        if check_closed:
            assert upstreams.unclosed == [], "every upstream response is closed (its connection released)"
    finally:
        await sidecar.aclose()


# --- what the client got ---------------------------------------------------------------------------


def frames_of(response: httpx.Response) -> list[str]:
    """The SSE frames of a streamed response, as text without the blank line ending each."""
    return [frame for frame in response.text.split("\n\n") if frame.strip()]


def frame_data(frame: str) -> Any:
    """The JSON of a frame's `data:` line(s), or the raw text ("[DONE]")."""
    data = "\n".join(line.removeprefix("data: ") for line in frame.splitlines() if line.startswith("data: "))
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data


def frame_event(frame: str) -> str | None:
    for line in frame.splitlines():
        if line.startswith("event: "):
            return line.removeprefix("event: ")
    return None


def openai_text(response: httpx.Response) -> str:
    """The answer text an OpenAI client assembles from a streamed response."""
    text = []
    for frame in frames_of(response):
        data = frame_data(frame)
        if isinstance(data, dict) and data.get("choices"):
            text.append(data["choices"][0].get("delta", {}).get("content") or "")
    return "".join(text)


def anthropic_text(response: httpx.Response) -> str:
    """The answer text an Anthropic client assembles from a streamed response."""
    text = []
    for frame in frames_of(response):
        data = frame_data(frame)
        if isinstance(data, dict) and data.get("type") == "content_block_delta":
            text.append(data["delta"].get("text", ""))
    return "".join(text)


def stream_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The in-band error objects of a streamed response, in either dialect's shape."""
    errors = []
    for frame in frames_of(response):
        data = frame_data(frame)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            errors.append(data["error"])
    return errors


def openai_finish(response: httpx.Response) -> str | None:
    finish = None
    for frame in frames_of(response):
        data = frame_data(frame)
        if isinstance(data, dict) and data.get("choices"):
            finish = data["choices"][0].get("finish_reason") or finish
    return finish
