#!/usr/bin/env python3
"""Fuzz target: a client's request body, as `sidecar.ingress` hands it to the router.

Every input is parsed in both dialects (`parse_request`); a body that parses is then planned for a
provider of either dialect, under its own model name and under another one (`plan_exchange`: the
pass-through, the re-serialised body and both translations), and a translated exchange gets the
same input as its provider's answer and error body. What must hold, whatever the bytes:

- `parse_request` returns a `ParsedRequest` whose model and stream flag are the body's, or raises
  `RequestError` (a 400 with a message) — nothing else;
- `plan_exchange` returns an `Exchange` whose upstream body is a JSON object naming the upstream
  model, streaming exactly when the client asked (and with `max_tokens` for Anthropic), or raises
  `TranslationError` — nothing else;
- the same bytes as the provider's answer: when `parse_answer` takes them, a translated exchange
  turns them into a JSON object or a `TranslationError`; as its error body, into a JSON object.

Run: `python fuzz/fuzz_requests.py fuzz/corpus/requests -max_total_time=600` (fuzz/README.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import atheris
import orjson

# Only Detour's own modules are instrumented: coverage feedback from orjson or pydantic internals
# would steer the fuzzer towards exploring those libraries instead of the sidecar.
with atheris.instrument_imports(include=["sidecar"]):
    from sidecar.dialects import Dialect
    from sidecar.dialects.answers import parse_answer
    from sidecar.dialects.exchange_plan import Exchange, plan_exchange
    from sidecar.dialects.inbound import ParsedRequest, parse_request
    from sidecar.errors import MalformedAnswer, RequestError, TranslationError

UPSTREAM_MODEL = "fuzz-upstream-model"


T = TypeVar("T")


def outcome(call: Callable[[], T], *allowed: type[Exception]) -> T | Exception:
    """What `call` returns, or the exception it raises if it is one of the `allowed` (documented)
    ones; any other exception propagates, and libFuzzer reports the input as a crash."""
    try:
        return call()
    except allowed as exc:
        return exc


def check(data: bytes) -> None:
    for dialect in Dialect:
        parsed = outcome(partial(parse_request, dialect, data), RequestError)
        if isinstance(parsed, RequestError):
            assert parsed.status == 400, parsed.status
            assert parsed.message, "a RequestError must say what is wrong"
            continue
        assert isinstance(parsed, ParsedRequest)
        check_parsed(parsed, data)
        for provider in Dialect:
            for upstream_model in (parsed.model, UPSTREAM_MODEL):
                check_exchange(dialect, provider, parsed, data, upstream_model)


def check_parsed(parsed: ParsedRequest, data: bytes) -> None:
    body = orjson.loads(data)  # it parsed, so this is a JSON object
    try:
        same = parsed.body == body
    except RecursionError:  # nested past Python's recursion limit (orjson reads 1024 levels)
        same = parsed.body.keys() == body.keys()
    assert same
    assert parsed.model == body["model"]
    assert isinstance(parsed.model, str)
    assert parsed.model
    assert parsed.stream is bool(body.get("stream"))
    assert isinstance(body["messages"], list)


def check_exchange(
    client: Dialect, provider: Dialect, parsed: ParsedRequest, data: bytes, upstream_model: str
) -> None:
    def plan() -> Exchange:
        return plan_exchange(
            client,
            provider,
            body=parsed.body,
            raw=data,
            requested_model=parsed.model,
            upstream_model=upstream_model,
            default_max_tokens=1024,
            now=1_750_000_000.0,
            stream=parsed.stream,
        )

    exchange = outcome(plan, TranslationError)
    if isinstance(exchange, TranslationError):
        assert str(exchange), "a TranslationError must say why the request cannot be expressed"
        return
    assert isinstance(exchange, Exchange)
    check_upstream_body(provider, exchange, parsed, upstream_model)
    answer = outcome(partial(parse_answer, provider, data), MalformedAnswer)  # as the router checks it
    if (convert := exchange.convert_response) is not None and isinstance(answer, dict):
        converted = outcome(partial(convert, answer), TranslationError)
        if isinstance(converted, TranslationError):
            assert str(converted), "a TranslationError must say why"
        else:
            assert isinstance(converted, bytes)
            assert isinstance(orjson.loads(converted), dict)
    if exchange.convert_error is not None:
        status, error = exchange.convert_error(400, data)
        assert status == 400
        assert isinstance(orjson.loads(error), dict)


def check_upstream_body(provider: Dialect, exchange: Exchange, parsed: ParsedRequest, model: str) -> None:
    upstream = orjson.loads(exchange.upstream_body)
    assert isinstance(upstream, dict), upstream
    assert upstream["model"] == model, (upstream["model"], model)
    assert bool(upstream.get("stream")) is parsed.stream
    assert isinstance(upstream["messages"], list)
    if provider is Dialect.ANTHROPIC:
        assert "max_tokens" in upstream


def TestOneInput(data: bytes) -> None:
    check(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
