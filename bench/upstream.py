"""A deliberately fast simulated LLM upstream, run in its own process: `python -m bench.upstream`.

The benchmark measures what Detour adds to a call, so the upstream must cost next to nothing: a raw
asyncio protocol on uvloop with httptools parsing, answering from prebuilt bytes. (The scriptable
`sidecar.simulate` servers run on aiohttp's web framework and are ten times slower — fine for tests,
not for a baseline.) It speaks just enough of both dialects:

- ``POST …/chat/completions`` (OpenAI) and ``POST …/messages`` (Anthropic): a small fixed answer, or,
  when the body asks for ``"stream": true``, an SSE stream of exactly ``--events`` events, each
  written as its own HTTP chunk in its own event-loop turn (as a real provider's tokens arrive);
- a path containing ``/429/``: a rate-limit error with ``retry-after: 0``, so a router fails over on
  every request without ever marking the provider limited;
- ``GET`` anything: ``200 {}`` (a readiness probe).

``--latency-ms`` delays every answer (the first byte) to model a remote provider; the default is 0.
It prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import httptools

CREATED = 1_750_000_000
TEXT = "Hello from the bench upstream."

OPENAI_BODY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1750000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},'
    b'"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}'
)
ANTHROPIC_BODY = (
    b'{"id":"msg_bench","type":"message","role":"assistant","model":"claude-3-5-haiku",'
    b'"content":[{"type":"text","text":"Hello from the bench upstream."}],"stop_reason":"end_turn",'
    b'"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":7}}'
)
OPENAI_429 = (
    b'{"error":{"message":"Rate limit reached (bench)","type":"requests","param":null,'
    b'"code":"rate_limit_exceeded"}}'
)
ANTHROPIC_429 = b'{"type":"error","error":{"type":"rate_limit_error","message":"Rate limited (bench)"}}'


def _openai_chunk(delta: str, finish: str | None = None) -> bytes:
    finish_json = "null" if finish is None else f'"{finish}"'
    return (
        '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1750000000,'
        f'"model":"gpt-4o-mini","choices":[{{"index":0,"delta":{delta},"logprobs":null,'
        f'"finish_reason":{finish_json}}}]}}'
    ).encode()


def openai_events(count: int, *, usage: bool) -> list[bytes]:
    """`count` SSE events: role+content, content…, finish, [DONE] (and a usage chunk when asked)."""
    body = max(count - 2, 1)
    events = [b"data: " + _openai_chunk('{"role":"assistant","content":"tok"}') + b"\n\n"]
    events += [b"data: " + _openai_chunk('{"content":" tok"}') + b"\n\n" for _ in range(body - 1)]
    events.append(b"data: " + _openai_chunk("{}", "stop") + b"\n\n")
    if usage:
        events.append(
            b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1750000000,'
            b'"model":"gpt-4o-mini","choices":[],'
            b'"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}\n\n'
        )
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(count: int) -> list[bytes]:
    """`count` SSE events: message_start, block start, deltas…, block stop, message_delta, stop."""
    deltas = max(count - 5, 1)

    def event(name: str, data: str) -> bytes:
        return f"event: {name}\ndata: {data}\n\n".encode()

    events = [
        event(
            "message_start",
            '{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant",'
            '"model":"claude-3-5-haiku","content":[],"stop_reason":null,"stop_sequence":null,'
            '"usage":{"input_tokens":9,"output_tokens":1}}}',
        ),
        event(
            "content_block_start",
            '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        ),
    ]
    delta = event(
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" tok"}}',
    )
    events += [delta] * deltas
    events += [
        event("content_block_stop", '{"type":"content_block_stop","index":0}'),
        event(
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
            '"usage":{"output_tokens":7}}',
        ),
        event("message_stop", '{"type":"message_stop"}'),
    ]
    return events


def _whole(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n" + extra
        + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def _chunked(events: list[bytes]) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    frames = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
    frames[0] = head + frames[0]
    frames.append(b"0\r\n\r\n")
    return frames


class Answers:
    """Every response the upstream can give, encoded once at start-up."""

    def __init__(self, events: int) -> None:
        retry = b"retry-after: 0\r\n"
        self.openai = _whole(b"200 OK", OPENAI_BODY)
        self.anthropic = _whole(b"200 OK", ANTHROPIC_BODY)
        self.openai_429 = _whole(b"429 Too Many Requests", OPENAI_429, retry)
        self.anthropic_429 = _whole(b"429 Too Many Requests", ANTHROPIC_429, retry)
        self.probe = _whole(b"200 OK", b"{}")
        self.not_found = _whole(b"404 Not Found", b'{"error":{"message":"not found"}}')
        self.openai_stream = _chunked(openai_events(events, usage=False))
        self.openai_stream_usage = _chunked(openai_events(events, usage=True))
        self.anthropic_stream = _chunked(anthropic_events(events))

    def choose(self, method: bytes, path: bytes, body: bytes) -> bytes | list[bytes]:
        if method != b"POST":
            return self.probe
        anthropic = path.endswith(b"/messages")
        if not anthropic and not path.endswith(b"/chat/completions"):
            return self.not_found
        if b"/429/" in path:
            return self.anthropic_429 if anthropic else self.openai_429
        if b'"stream":true' in body or b'"stream": true' in body:
            if anthropic:
                return self.anthropic_stream
            usage = b'"include_usage":true' in body or b'"include_usage": true' in body
            return self.openai_stream_usage if usage else self.openai_stream
        return self.anthropic if anthropic else self.openai


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (clients here never pipeline)."""

    __slots__ = ("_answers", "_body", "_latency_s", "_loop", "_method", "_parser", "_transport", "_url")

    def __init__(self, answers: Answers, latency_s: float) -> None:
        self._answers = answers
        self._latency_s = latency_s
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._method = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._body = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._method = self._parser.get_method()
        answer = self._answers.choose(self._method, self._url, b"".join(self._body))
        if self._latency_s > 0:
            self._loop.call_later(self._latency_s, self._send, answer)
        else:
            self._send(answer)

    def _send(self, answer: bytes | list[bytes]) -> None:
        if self._transport is None:
            return
        if isinstance(answer, bytes):
            self._transport.write(answer)
        else:
            self._send_frames(answer, 0)

    def _send_frames(self, frames: list[bytes], index: int) -> None:
        """One SSE event per loop turn, so the reader sees events arrive one by one."""
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(frames[index])
        if index + 1 < len(frames):
            self._loop.call_soon(self._send_frames, frames, index + 1)


async def serve(host: str, port: int, *, events: int, latency_s: float) -> None:
    answers = Answers(events)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(answers, latency_s), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", type=int, default=200, help="SSE events per stream (default 200)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--cpu", type=int, action="append", help="pin to this core (repeatable)")
    args = parser.parse_args(argv)
    if args.cpu:
        os.sched_setaffinity(0, set(args.cpu))
    import uvloop

    try:
        uvloop.run(serve(args.host, args.port, events=args.events, latency_s=args.latency_ms / 1000))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
