"""The bad-input corpus, as data: each case is the bytes a client sends (or what an upstream does)
and what the client must get back. `test_bad_input_corpus` runs every case against one real
`detour serve` and checks status, error shape, connection handling and what the upstreams saw.

Routing of the corpus's sidecar (see `corpus_config`): `probe-*` → the probe provider (the
concurrent well-formed requests), `raw-*` → the raw upstream then the OpenAI backup, `claude-*` →
Anthropic primary then backup, `gpt-*` → OpenAI primary then backup; nothing else matches (404).
Upstream cases use a model of their own, so no rate limit or circuit of one case touches another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.simulate import Behaviour
from tests.hardening.upstream import Writer
from tests.hardening.wire import RawResponse, Shape, request_bytes

MiB = 1024 * 1024
OPENAI, ANTHROPIC = "/v1/chat/completions", "/v1/messages"
OPENAI_HEADERS = (("authorization", "Bearer sk-corpus-client"), ("content-type", "application/json"))
ANTHROPIC_HEADERS = (
    ("x-api-key", "sk-ant-corpus-client"),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
)
MESSAGES = [{"role": "user", "content": "Hello"}]


@dataclass
class Seen:
    """What a case left behind: the raw upstream's requests for the case's model (their bodies),
    /admin/state after the case, and the answer."""

    raw_bodies: list[bytes]
    state: dict[str, Any]
    response: RawResponse


Check = Callable[[RawResponse, Seen], None]  # a case's own assertions beyond the table's


@dataclass(frozen=True)
class Upstreams:
    """What each upstream does during a case (`None`: answer normally)."""

    openai_primary: Behaviour | None = None
    openai_backup: Behaviour | None = None
    anthropic_primary: Behaviour | None = None
    anthropic_backup: Behaviour | None = None
    raw: Writer | None = None  # for the case's model


@dataclass(frozen=True)
class Case:
    id: str
    request: bytes | tuple[bytes, ...]
    status: int
    shape: Shape | None = None  # the error body's shape; None: a success
    param: str | None = None  # an OpenAI error's `param`
    closes: bool = False  # the server answers, then closes; nothing follows the answer
    upstream_requests: int | None = 0  # requests all upstreams saw together (None: not checked)
    provider: str | None = None  # x-detour-provider of a success
    attempts: int | None = None  # x-detour-attempts
    upstreams: Upstreams = field(default_factory=Upstreams)
    check: Check | None = None
    heavy: bool = False  # replayed by the memory test

    def model(self) -> str | None:
        """The model the request names (the first occurrence), if any."""
        request = self.request if isinstance(self.request, bytes) else self.request[0]
        start = request.find(b'"model":"')
        if start < 0:
            return None
        start += len(b'"model":"')
        return request[start : request.index(b'"', start)].decode(errors="replace")


def body(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


def openai(payload: Any, *, path: str = OPENAI, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    return request_bytes("POST", path, body(payload), headers=(*OPENAI_HEADERS, *headers))


def anthropic(payload: Any, *, path: str = ANTHROPIC, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    return request_bytes("POST", path, body(payload), headers=(*ANTHROPIC_HEADERS, *headers))


def chat(model: Any = "gpt-4o", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, **fields}


def message(model: Any = "claude-sonnet-4-6", **fields: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "messages": MESSAGES, **fields}


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in payload.items() if name != key}


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return b'{"model":"gpt-4o","messages":[],"x":' + opener * depth + closer * depth + b"}"


def nested_objects(depth: int) -> bytes:
    return b'{"model":"gpt-4o","messages":[],"x":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


def oversized(path: str, headers: Sequence[tuple[str, str]], size: int) -> tuple[bytes, ...]:
    """A JSON-looking body of `size` bytes, sent in 1 MiB pieces behind its Content-Length."""
    start = b'{"model":"gpt-4o","messages":[{"role":"user","content":"'
    end = b'"}]}'
    filler = size - len(start) - len(end)
    head = request_bytes("POST", path, b"", headers=headers, content_length=False)
    head = head[:-2] + f"content-length: {size}\r\n\r\n".encode()
    pieces = [head + start]
    pieces += [b"a" * MiB] * (filler // MiB) + [b"a" * (filler % MiB) + end]
    return tuple(pieces)


def oversized_chunked(size: int) -> tuple[bytes, ...]:
    head = request_bytes(
        "POST", OPENAI, headers=(*OPENAI_HEADERS, ("transfer-encoding", "chunked")), content_length=False
    )
    piece = b"100000\r\n" + b"a" * MiB + b"\r\n"
    return (head, *[piece] * (size // MiB), b"0\r\n\r\n")


def header_line(size: int, path: str = "/v1/chat/completions") -> bytes:
    payload = body(chat("probe-header"))
    return request_bytes("POST", path, payload, headers=(*OPENAI_HEADERS, ("x-pad", "a" * size)))


def many_headers(count: int) -> bytes:
    pads = tuple((f"x-pad-{index}", "a" * 24) for index in range(count))
    return request_bytes("POST", OPENAI, body(chat()), headers=(*OPENAI_HEADERS, *pads))


def raw_head(*lines: str, payload: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


SMUGGLED = b"GET /admin/state HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
VALID = orjson.dumps(chat())
