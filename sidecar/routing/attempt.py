"""One attempt: send a request to one candidate and say what came of it, as a typed outcome.

A non-streaming attempt ends when its whole body is read. A streaming attempt ends at the commit
point of docs/architecture.md §3 — the first upstream content event (`stream.commit`) — so everything before
it (429, 5xx, an error event, a silent provider, a stream that closes early) is still a failure the
router can fail over from. Foreign failures arrive as `sidecar.errors` and are mapped to an
`Outcome` here, once; the router acts on the outcome through `policy.POLICY`.

An optional `AttemptTrace` (telemetry) sees the attempt: it gets the upstream body of a whole
answer and is ended here — except a committed stream's, which its relay ends with the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.dialects import Dialect
from sidecar.dialects.answers import parse_answer
from sidecar.dialects.exchange_plan import Exchange
from sidecar.errors import (
    MalformedAnswer,
    ResumeRefused,
    TranslationError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from sidecar.providers.classify import Outcome, classify, parse_error_body
from sidecar.providers.client import ClientHeaders, ProviderClient
from sidecar.providers.http import UpstreamResponse
from sidecar.routing.budgets import BudgetSink
from sidecar.routing.events import AttemptTrace
from sidecar.routing.exchange import RoutedResponse
from sidecar.routing.policy import AttemptFailure
from sidecar.routing.strategies import Candidate
from sidecar.routing.stream import Emitter, Resume, StreamCounters, StreamLeg, commit, relay

log = logging.getLogger("detour.attempt")

_FORWARDED_RESPONSE_HEADERS = ("x-request-id", "request-id", "openai-processing-ms")


async def run_attempt(
    client: ProviderClient,
    candidate: Candidate,
    body: bytes,
    headers_in: ClientHeaders,
    *,
    emitter: Callable[[], Emitter] | None,
    convert_response: Callable[[dict[str, Any]], bytes] | None,
    counters: StreamCounters,
    trace: AttemptTrace | None = None,
    budgets: BudgetSink | None = None,
) -> RoutedResponse | StreamLeg | AttemptFailure:
    """A whole answer (`emitter` None), a committed stream leg, or a failure.

    `budgets` (only while some rule routes on remaining quota, docs/scale-out.md) is told every
    response's headers, a 429's included.

    `timeout_secs` bounds a whole non-streaming attempt; a stream is bounded until its first
    content event by `first_token_timeout_secs` (else `timeout_secs`), and between events by
    `stream_idle_timeout_secs`."""
    config = client.config
    deadline = config.first_token_timeout_secs if emitter is not None else None
    result: RoutedResponse | StreamLeg | AttemptFailure
    try:
        async with asyncio.timeout(deadline or config.timeout_secs):
            extra = trace.upstream_headers if trace is not None else ()
            response = await client.send(body, headers_in, extra)
            if budgets is not None:
                budgets.note(candidate, response.headers)
            if response.status >= 400:
                result = await _failure_from_status(client.dialect, response)
            elif emitter is None:
                answer = await response.read()
                parsed = parse_answer(client.dialect, answer)  # a 200 that is no answer fails over
                if trace is not None:
                    trace.response_answer(parsed)
                if convert_response is not None:
                    answer = convert_response(parsed)
                result = _whole(response, candidate, answer)
            else:
                leg = StreamLeg(
                    response,
                    candidate,
                    client.dialect,
                    emitter(),
                    counters,
                    config.stream_idle_timeout_secs,
                    trace,
                )
                failure = await commit(leg)
                result = leg if failure is None else failure
    except (UpstreamTimeout, TimeoutError):
        result = AttemptFailure(Outcome.TIMEOUT)
    except UpstreamConnectError as exc:
        log.info("provider %s: %s", candidate.provider_id, exc)
        result = AttemptFailure(Outcome.CONNECT_ERROR)
    except MalformedAnswer as exc:
        log.warning("provider %s: %s", candidate.provider_id, exc)
        result = AttemptFailure(Outcome.MALFORMED_ANSWER)
    except UpstreamError as exc:
        log.info("provider %s: %s", candidate.provider_id, exc)
        result = AttemptFailure(Outcome.STREAM_ERROR)
    except TranslationError as exc:
        log.warning("provider %s: answer could not be translated: %s", candidate.provider_id, exc)
        result = AttemptFailure(Outcome.TRANSLATION_ERROR)
    except ResumeRefused as exc:
        log.info("provider %s cannot continue the stream: %s", candidate.provider_id, exc)
        result = AttemptFailure(Outcome.REFUSED)
    except BaseException:
        if trace is not None:
            trace.end(None, "cancelled")
        raise
    if trace is not None:
        if isinstance(result, AttemptFailure):
            trace.end(result.status, result.error_type)
        elif isinstance(result, RoutedResponse):
            trace.end(result.status, None)
    return result


def stream_response(leg: StreamLeg, client_dialect: Dialect, resume: Resume | None) -> RoutedResponse:
    """The client's response for a committed first leg: its relay as the body."""
    return RoutedResponse(
        status=200,
        content_type="text/event-stream",
        provider_id=leg.candidate.provider_id,
        model=leg.candidate.model,
        stream=relay(leg, client_dialect, resume),
        headers=_forwarded(leg.response.headers),
        release=leg.response.close,
    )


def client_error(
    candidate: Candidate, failure: AttemptFailure, attempts: int, exchange: Exchange
) -> RoutedResponse:
    """The provider's own 4xx, in the client's dialect, with the provider's reason."""
    status, body = failure.status or 400, failure.body
    if exchange.convert_error is not None:
        status, body = exchange.convert_error(status, body)
    return RoutedResponse(
        status=status,
        content_type="application/json",
        provider_id=candidate.provider_id,
        model=candidate.model,
        attempts=attempts,
        body=body,
    )


async def _failure_from_status(dialect: Dialect, response: UpstreamResponse) -> AttemptFailure:
    body = await response.read()
    outcome = classify(dialect, response.status, parse_error_body(body))
    return AttemptFailure(outcome, response.status, response.headers, body)


def _whole(response: UpstreamResponse, candidate: Candidate, body: bytes) -> RoutedResponse:
    return RoutedResponse(
        status=response.status,
        content_type=response.headers.get("content-type", "application/json"),
        provider_id=candidate.provider_id,
        model=candidate.model,
        body=body,
        headers=_forwarded(response.headers),
    )


def _forwarded(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(name, headers[name]) for name in _FORWARDED_RESPONSE_HEADERS if name in headers]
