"""The client side of the bad-input corpus (the vocabulary is in `corpus`; upstream misbehaviour is
in `corpus_upstream`): what a client sends in a body, and in the request line and headers —
framing, sizes, smuggling, injection."""

from __future__ import annotations

import json
from typing import Any

import orjson

from tests.hardening.corpus import (
    ANTHROPIC,
    ANTHROPIC_HEADERS,
    MESSAGES,
    OPENAI,
    OPENAI_HEADERS,
    SMUGGLED,
    VALID,
    Case,
    Check,
    MiB,
    Seen,
    anthropic,
    chat,
    header_line,
    many_headers,
    message,
    nested,
    nested_objects,
    openai,
    oversized,
    oversized_chunked,
    raw_head,
    without,
)
from tests.hardening.wire import RawResponse, Shape, request_bytes

MESSAGES_JSON = orjson.dumps(MESSAGES)

# --- checks ----------------------------------------------------------------------------------------


def no_injected_header(response: RawResponse, seen: Seen) -> None:
    assert response.header("x-injected") is None, response.head
    for name, value in response.headers:
        assert b"\r" not in value, (name, value)
        assert b"\n" not in value, (name, value)


def upstream_got_key_once(key: str, value: object) -> Check:
    """The raw upstream received one request whose top level names `key` once, as `value`."""

    def check(response: RawResponse, seen: Seen) -> None:
        assert len(seen.raw_bodies) == 1, [body[:200] for body in seen.raw_bodies]
        pairs: list[list[tuple[str, Any]]] = []

        def keep(found: list[tuple[str, Any]]) -> dict[str, Any]:
            pairs.append(found)
            return dict(found)

        json.loads(seen.raw_bodies[0], object_pairs_hook=keep)
        top = pairs[-1]  # the hook sees the outermost object last
        assert [item for name, item in top if name == key] == [value], top

    return check


# --- what a client sends in the body ---------------------------------------------------------------


def _bad(case_id: str, payload: Any, *, param: str | None = None, dialect: str = "openai") -> Case:
    request = openai(payload) if dialect == "openai" else anthropic(payload)
    shape: Shape = "openai" if dialect == "openai" else "anthropic"
    return Case(case_id, request, 400, shape, param=param if dialect == "openai" else None)


BODY_CASES = [
    _bad("json-malformed", b'{"model": "gpt-4o", "messages": ['),
    _bad("json-malformed-anthropic", b'{"model": "claude-x", "max_tokens": 5,', dialect="anthropic"),
    _bad("json-trailing-garbage", VALID + b"}{"),
    _bad("json-array", [chat()]),
    _bad("json-string", "gpt-4o"),
    _bad("json-null", None),
    _bad("json-number", 42),
    _bad("json-array-anthropic", [message()], dialect="anthropic"),
    _bad("model-missing", without(chat(), "model"), param="model"),
    _bad("model-int", chat(model=4), param="model"),
    _bad("model-null", chat(model=None), param="model"),
    _bad("model-empty", chat(model=""), param="model"),
    _bad("model-list", chat(model=["gpt-4o"]), param="model"),
    _bad("model-object-anthropic", message(model={"id": "claude"}), dialect="anthropic"),
    _bad("messages-missing", without(chat(), "messages"), param="messages"),
    _bad("messages-string", chat(messages="Hello"), param="messages"),
    _bad("messages-object", chat(messages={"role": "user"}), param="messages"),
    _bad("messages-null-anthropic", message(messages=None), dialect="anthropic"),
    _bad("stream-string", chat(stream="yes"), param="stream"),
    _bad("stream-int", chat(stream=1), param="stream"),
    _bad("stream-string-anthropic", message(stream="true"), dialect="anthropic"),
    _bad("max-tokens-missing", without(message(), "max_tokens"), dialect="anthropic"),
    _bad("max-tokens-string", message(max_tokens="64"), dialect="anthropic"),
    _bad("max-tokens-bool", message(max_tokens=True), dialect="anthropic"),
    _bad("max-tokens-float", message(max_tokens=6.5), dialect="anthropic"),
    _bad("max-tokens-null", message(max_tokens=None), dialect="anthropic"),
    _bad("nested-100k-arrays", nested(100_000)),
    _bad("nested-100k-objects", nested_objects(100_000)),
    _bad("nested-100k-anthropic", nested(100_000), dialect="anthropic"),
    _bad("empty-body", b""),
    _bad("empty-body-anthropic", b"", dialect="anthropic"),
    _bad("whitespace-body", b" \r\n\t "),
    _bad("non-utf8-body", VALID.replace(b"gpt-4o", b"gpt-4o\xff\xfe")),
    _bad("non-utf8-body-anthropic", VALID.replace(b"Hello", b"H\xc3\x28llo"), dialect="anthropic"),
    _bad("utf16-body", VALID.decode().encode("utf-16")),
    _bad("utf8-bom-body", b"\xef\xbb\xbf" + VALID),
    _bad("lone-surrogate", VALID.replace(b"Hello", b"\\ud800")),
    Case(
        "stream-null-is-not-streaming",
        openai(chat("probe-ok", stream=None)),
        200,
        upstream_requests=1,
        provider="probe",
    ),
    Case(
        "body-over-32mib",
        oversized(OPENAI, OPENAI_HEADERS, 33 * MiB),
        413,
        "openai",
        heavy=True,
    ),
    Case(
        "body-over-32mib-anthropic",
        oversized(ANTHROPIC, ANTHROPIC_HEADERS, 33 * MiB),
        413,
        "anthropic",
        heavy=True,
    ),
    Case("body-over-32mib-chunked", oversized_chunked(33 * MiB), 413, "openai", heavy=True),
    # A routing key given twice: routed on the last one, and the provider gets it once.
    Case(
        "duplicate-model-key",
        openai(b'{"model":"no-such-model","model":"raw-dup-model","messages":%s}' % MESSAGES_JSON),
        200,
        upstream_requests=1,
        provider="raw",
        check=upstream_got_key_once("model", "raw-dup-model"),
    ),
    Case(
        "escaped-duplicate-model-key",
        openai(b'{"model":"no-such-model","m\\u006fdel":"raw-escaped-model","messages":%s}' % MESSAGES_JSON),
        200,
        upstream_requests=1,
        provider="raw",
        check=upstream_got_key_once("model", "raw-escaped-model"),
    ),
    Case(
        "duplicate-stream-key-last-false",
        openai(b'{"model":"raw-dup-stream","stream":true,"stream":false,"messages":%s}' % MESSAGES_JSON),
        200,
        upstream_requests=1,
        provider="raw",
        check=upstream_got_key_once("stream", False),
    ),
    Case(
        "duplicate-stream-key-last-true",
        openai(b'{"model":"raw-dup-stream-on","stream":false,"stream":true,"messages":%s}' % MESSAGES_JSON),
        200,
        upstream_requests=1,
        provider="raw",
        check=upstream_got_key_once("stream", True),
    ),
    Case(
        "crlf-in-model-name",
        openai(chat("probe-ok\r\nx-injected: yes")),
        200,
        upstream_requests=1,
        provider="probe",
        check=no_injected_header,
    ),
    Case("unknown-model", openai(chat("no-such-model")), 404, "openai", param="model"),
    Case("unknown-model-anthropic", anthropic(message("no-such-model")), 404, "anthropic"),
]


# --- what a client sends in the request line and headers -------------------------------------------


def _framing(case_id: str, *lines: str, payload: bytes = b"") -> Case:
    """A head the HTTP parser rejects: 400 in the error shape both SDKs parse, the connection
    closed, nothing after the answer (a smuggled request is never answered) and no upstream call."""
    return Case(case_id, raw_head(*lines, payload=payload), 400, "both", closes=True)


_POST = "POST /v1/chat/completions HTTP/1.1"
_HOST = "host: 127.0.0.1"

HEAD_CASES = [
    Case("header-line-100kb", header_line(100 * 1024), 431, "both", closes=True),
    Case("header-line-100kb-anthropic", header_line(100 * 1024, ANTHROPIC), 431, "both", closes=True),
    Case("header-1mb", header_line(MiB), 431, "both", closes=True, heavy=True),
    Case(
        "request-line-100kb", request_bytes("GET", "/healthz?" + "a" * 100 * 1024), 431, "both", closes=True
    ),
    Case("headers-3000", many_headers(3000), 431, "both", closes=True),
    _framing(
        "smuggle-cl-te",
        _POST,
        _HOST,
        "content-length: 4",
        "transfer-encoding: chunked",
        payload=b"0\r\n\r\n" + SMUGGLED,
    ),
    _framing(
        "smuggle-te-cl",
        _POST,
        _HOST,
        "transfer-encoding: chunked",
        "content-length: 60",
        payload=b"0\r\n\r\n" + SMUGGLED,
    ),
    _framing(
        "smuggle-cl-cl", _POST, _HOST, "content-length: 5", f"content-length: {len(VALID)}", payload=VALID
    ),
    _framing(
        "smuggle-te-xchunked", _POST, _HOST, "transfer-encoding: xchunked", payload=b"0\r\n\r\n" + SMUGGLED
    ),
    _framing(
        "smuggle-te-chunked-identity",
        _POST,
        _HOST,
        "transfer-encoding: chunked, identity",
        payload=b"0\r\n\r\n" + SMUGGLED,
    ),
    _framing(
        "smuggle-te-space-before-colon",
        _POST,
        _HOST,
        "transfer-encoding : chunked",
        payload=b"0\r\n\r\n" + SMUGGLED,
    ),
    _framing(
        "chunk-size-not-hex", _POST, _HOST, "transfer-encoding: chunked", payload=b"zz\r\nabc\r\n0\r\n\r\n"
    ),
    _framing("content-length-negative", _POST, _HOST, "content-length: -1", payload=b"{}"),
    _framing("content-length-plus", _POST, _HOST, "content-length: +2", payload=b"{}"),
    _framing("content-length-hex", _POST, _HOST, "content-length: 0x2", payload=b"{}"),
    _framing(
        "bare-cr-in-header", _POST, _HOST, "x-note: a\rx-injected: b", "content-length: 2", payload=b"{}"
    ),
    _framing(
        "bare-lf-in-header", _POST, _HOST, "x-note: a\nx-injected: b", "content-length: 2", payload=b"{}"
    ),
    _framing("nul-in-header", _POST, _HOST, "x-note: a\x00b", "content-length: 2", payload=b"{}"),
    _framing(
        "obs-fold-header",
        _POST,
        _HOST,
        "authorization: Bearer k",
        " x-injected: 1",
        "content-length: 2",
        payload=b"{}",
    ),
    _framing("space-in-header-name", _POST, _HOST, "x note: a", "content-length: 2", payload=b"{}"),
    _framing("space-in-request-target", "POST /v1/chat/completions x HTTP/1.1", _HOST, "content-length: 0"),
    _framing("unknown-method", "BREW /v1/messages HTTP/1.1", _HOST, "content-length: 0"),
    _framing("http2-preface", "PRI * HTTP/2.0", "", "SM"),
    Case(
        "tls-client-hello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
        400,
        "both",
        closes=True,
    ),
    Case(
        "smuggle-te-in-http10",
        raw_head(
            "POST /v1/chat/completions HTTP/1.0",
            _HOST,
            "transfer-encoding: chunked",
            payload=b"0\r\n\r\n" + SMUGGLED,
        ),
        400,
        "openai",
        closes=True,
    ),
    Case("unknown-path", openai(chat(), path="/v1/completions"), 404, "openai"),
    Case("unknown-path-under-messages", anthropic(message(), path="/v1/messages/batches"), 404, "anthropic"),
    Case("path-traversal", request_bytes("GET", "/v1/../admin/state"), 404, "openai"),
    Case(
        "crlf-in-encoded-path",
        openai(chat(), path="/v1/chat/completions%0d%0ax-injected:%201"),
        404,
        "openai",
        check=no_injected_header,
    ),
    Case("get-chat-completions", request_bytes("GET", OPENAI), 405, "openai"),
    Case("delete-messages", request_bytes("DELETE", ANTHROPIC), 405, "anthropic"),
    Case("put-admin-state", request_bytes("PUT", "/admin/state", b"{}"), 405, "openai"),
    Case(
        "expect-100-continue",
        openai(chat("probe-ok"), headers=(("expect", "100-continue"),)),
        200,
        upstream_requests=1,
        provider="probe",
    ),
]

# `curl --http2 http://…` asks to upgrade to h2c with its POST body in the same request; a server
# that does not upgrade must serve the request as HTTP/1.1, body included.
H2C_UPGRADE = Case(
    "h2c-upgrade-with-body",
    openai(
        chat("probe-ok"),
        headers=(
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABk"),
        ),
    ),
    200,
    upstream_requests=1,
    provider="probe",
)
