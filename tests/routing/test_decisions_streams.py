"""Routing decisions for streams, through the transport seam: before the first content event a
failure fails over transparently; after it the client gets an in-band error in its own dialect and
the stream never ends as a success. Slow first tokens and stalls use the transport's controllable
`Stall` with small real timeouts (0.05 s); everything else is event-driven.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.memory_transport import (
    Script,
    Stall,
    Upstreams,
    anthropic_at,
    anthropic_text,
    connection_closed,
    connection_reset,
    frame_data,
    frame_event,
    frames_of,
    in_memory_detour,
    openai_at,
    openai_finish,
    openai_text,
    rate_limit,
    server_error,
    silent,
    sse_response,
    stream_errors,
    stream_frames,
    streamed,
)
from tests.support.running import config_text, limits_alternative_rule

STORY = "Once upon a time there was a sidecar that never gave up."
DONE = b"data: [DONE]\n\n"
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def at(dialect: str, name: str, **settings: Any) -> dict[str, Any]:
    """A provider of `dialect` that serves either client (its model map covers both clients' model)."""
    if dialect == "openai":
        return openai_at(name, model_map={"claude-sonnet-4-5": "gpt-4o"}, **settings)
    return anthropic_at(name, model_map={"gpt-4o": "claude-sonnet-4-5"}, **settings)


def pair(dialect: str = "openai", *, primary: dict[str, Any] | None = None) -> str:
    providers = {"primary": at(dialect, "primary", **(primary or {})), "backup": at(dialect, "backup")}
    return config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])


async def stream_as(detour: Any, client: str) -> Any:
    if client == "openai":
        return await detour.chat(stream=True)
    return await detour.messages(stream=True)


def text_of(response: Any, client: str) -> str:
    return openai_text(response) if client == "openai" else anthropic_text(response)


def ended_as_success(response: Any, client: str) -> bool:
    if client == "openai":
        return "data: [DONE]" in response.text or openai_finish(response) is not None
    return any(frame_event(frame) in ("message_stop", "message_delta") for frame in frames_of(response))


# Each dialect's frames up to some content: OpenAI role chunk + 3 words; Anthropic message_start,
# content_block_start, ping + 2 text deltas.
CONTENT_FRAMES = {"openai": 4, "anthropic": 5}
PREAMBLE_FRAMES = {"openai": 1, "anthropic": 3}
COMBINATIONS = [
    ("openai", "openai"),
    ("openai", "anthropic"),
    ("anthropic", "anthropic"),
    ("anthropic", "openai"),
]
COMBINATION_IDS = [f"{client}-client-{provider}-provider" for client, provider in COMBINATIONS]


# --- before the first content event: failover, invisible to the client ------------------------------------


@pytest.mark.parametrize(("client", "provider"), COMBINATIONS, ids=COMBINATION_IDS)
async def test_a_429_before_the_stream_starts_fails_over_transparently(client: str, provider: str) -> None:
    upstreams = Upstreams(primary=rate_limit("30"), backup=streamed(STORY))
    async with in_memory_detour(pair(provider), upstreams) as detour:
        response = await stream_as(detour, client)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "2")
    assert text_of(response, client) == STORY
    assert stream_errors(response) == []
    assert upstreams.order == ["primary", "backup"]


async def test_a_5xx_before_the_stream_starts_is_retried_then_fails_over_transparently() -> None:
    upstreams = Upstreams(primary=server_error(503), backup=streamed(STORY))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert response.headers["x-detour-attempts"] == "3"
    assert openai_text(response) == STORY
    assert upstreams.order == ["primary", "primary", "backup"]


OVERLOADED_EVENT = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)
OPENAI_ERROR_EVENT = (
    b'data: {"error":{"message":"The server had an error while processing your request.",'
    b'"type":"server_error","param":null,"code":null}}\n\n'
)


@pytest.mark.parametrize(
    ("provider", "error_event"), [("anthropic", OVERLOADED_EVENT), ("openai", OPENAI_ERROR_EVENT)]
)
async def test_an_error_event_before_the_first_content_fails_over_and_releases_the_connection(
    provider: str, error_event: bytes
) -> None:
    upstreams = Upstreams(
        primary=streamed(keep=PREAMBLE_FRAMES[provider], then=[error_event]), backup=streamed(STORY)
    )
    async with in_memory_detour(pair(provider), upstreams) as detour:  # checks every response was closed
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY
    assert stream_errors(response) == []
    assert response.headers["x-detour-provider"] == "backup"
    assert upstreams.order == ["primary", "primary", "backup"], "a server error in-band is retried like a 5xx"


async def test_a_rate_limit_event_before_the_first_content_is_recorded_as_a_limit_and_fails_over() -> None:
    rate_limited = (
        b'data: {"error":{"message":"Rate limit reached for gpt-4o","type":"requests",'
        b'"param":null,"code":"rate_limit_exceeded"}}\n\n'
    )
    upstreams = Upstreams(primary=streamed(keep=1, then=[rate_limited]), backup=streamed(STORY))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat(stream=True)
        limits = await detour.limits()
        again = await detour.chat(stream=True)

    assert openai_text(response) == STORY
    assert limits[("primary", "gpt-4o")]["wait_source"] == "backoff"
    assert again.headers["x-detour-provider"] == "backup"
    assert upstreams.order == ["primary", "backup", "backup"]


async def test_a_client_error_event_before_content_reaches_the_client_as_an_error_response() -> None:
    invalid = (
        b'event: error\ndata: {"type":"error",'
        b'"error":{"type":"invalid_request_error","message":"bad tool"}}\n\n'
    )
    upstreams = Upstreams(primary=streamed(keep=1, then=[invalid]))
    async with in_memory_detour(pair("anthropic"), upstreams) as detour:
        response = await detour.messages(stream=True)

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad tool"},
    }
    assert upstreams.order == ["primary"]


@pytest.mark.parametrize(
    "ending",
    [lambda: [connection_reset()], lambda: [connection_closed()], list],
    ids=["reset", "closed", "early-end"],
)
async def test_a_stream_broken_before_the_first_content_is_retried_then_fails_over(
    ending: Callable[[], list[Any]],
) -> None:
    upstreams = Upstreams(primary=streamed(STORY, keep=1, then=ending()), backup=streamed(STORY))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY
    assert response.text.count('"role":"assistant"') == 1, "the broken stream's preamble was never sent"
    assert response.headers["x-detour-attempts"] == "3"
    assert upstreams.order == ["primary", "primary", "backup"]


@pytest.mark.parametrize("where", ["before-headers", "after-preamble"])
async def test_a_first_token_slower_than_first_token_timeout_fails_over_without_a_retry(where: str) -> None:
    stall = Stall()
    primary = silent(stall) if where == "before-headers" else streamed(keep=1, then=[stall])
    upstreams = Upstreams(primary=primary, backup=streamed(STORY))
    text = pair(primary={"first_token_timeout_secs": 0.05, "max_retries": 3})
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.chat(stream=True)
        counters = await detour.counters()

    assert stall.reached.is_set()
    assert openai_text(response) == STORY
    assert (response.headers["x-detour-provider"], response.headers["x-detour-attempts"]) == ("backup", "2")
    assert upstreams.order == ["primary", "backup"], "a silent provider is not asked again"
    assert counters["timeouts"] == 1


# --- after the first content event: in-band, never a success ---------------------------------------------


@pytest.mark.parametrize(("client", "provider"), COMBINATIONS, ids=COMBINATION_IDS)
async def test_a_stream_cut_after_content_ends_with_an_error_event_in_the_clients_dialect(
    client: str, provider: str
) -> None:
    upstreams = Upstreams(
        primary=Script(streamed(STORY, keep=CONTENT_FRAMES[provider], then=[connection_reset()]))
    )
    async with in_memory_detour(pair(provider), upstreams) as detour:
        response = await stream_as(detour, client)
        after = await stream_as(detour, client)

    assert response.status_code == 200
    received = text_of(response, client)
    assert received, "the content before the cut reached the client"
    assert STORY.startswith(received)
    last = frames_of(response)[-1]
    (error,) = stream_errors(response)
    assert frame_data(last)["error"] == error, "the error is the last frame"
    if client == "anthropic":
        assert frame_event(last) == "error"
        assert frame_data(last)["type"] == "error"
        assert error["type"] == "api_error"
    else:
        assert frame_event(last) is None
        assert error["type"] == "server_error"
    assert "broke" in error["message"]
    assert not ended_as_success(response, client)
    assert upstreams.order == ["primary", "primary"], "no silent switch to the backup, and no retry"
    assert text_of(after, client) == "Hello there.", "the sidecar keeps serving from the same provider"


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_a_stream_that_ends_early_after_content_ends_with_an_error_event(client: str) -> None:
    upstreams = Upstreams(primary=Script(streamed(STORY, keep=CONTENT_FRAMES["openai"])))
    async with in_memory_detour(pair("openai"), upstreams) as detour:
        response = await stream_as(detour, client)

    (error,) = stream_errors(response)
    assert "ended before the answer was complete" in error["message"]
    assert not ended_as_success(response, client)
    assert upstreams.order == ["primary"]


async def test_an_error_event_after_content_is_passed_on_once_and_the_stream_is_not_finished() -> None:
    upstreams = Upstreams(primary=streamed(STORY, keep=4, then=[OPENAI_ERROR_EVENT]))
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat(stream=True)

    (error,) = stream_errors(response)
    assert error["type"] == "server_error"
    assert error["message"] == "The server had an error while processing your request."
    assert frames_of(response)[-1] == OPENAI_ERROR_EVENT.decode().strip()
    assert not ended_as_success(response, "openai")
    assert upstreams.order == ["primary"]


def error_then_the_rest(provider: str) -> Any:
    """The provider's stream up to some content, then one upstream read holding an error event and,
    behind it, the rest of the answer and its end."""
    error_event = OVERLOADED_EVENT if provider == "anthropic" else OPENAI_ERROR_EVENT

    def handle(request: Any) -> Any:
        frames = stream_frames(request, STORY)
        kept = CONTENT_FRAMES[provider]
        return sse_response([*frames[:kept], error_event + b"".join(frames[kept:])])

    return handle


@pytest.mark.parametrize(("client", "provider"), COMBINATIONS, ids=COMBINATION_IDS)
async def test_nothing_behind_an_error_event_in_the_same_read_reaches_the_client(
    client: str, provider: str
) -> None:
    upstreams = Upstreams(primary=error_then_the_rest(provider))
    async with in_memory_detour(pair(provider), upstreams) as detour:
        response = await stream_as(detour, client)

    received = text_of(response, client)
    assert received, "the content before the error reached the client"
    assert STORY.startswith(received)
    assert received != STORY, "nothing the provider sent after its error"
    (error,) = stream_errors(response)
    assert frame_data(frames_of(response)[-1])["error"] == error, "the error is the last frame"
    assert not ended_as_success(response, client)
    assert upstreams.order == ["primary"]


async def test_a_resume_after_an_error_event_continues_from_what_came_before_it() -> None:
    """With resume_streams, the error is held back while the backup continues; what came behind the
    error must not reach the client first, or the continuation would repeat it."""
    sent = "Once upon a"  # the text of STORY's first CONTENT_FRAMES["openai"] frames
    upstreams = Upstreams(primary=error_then_the_rest("openai"), backup=streamed(STORY.removeprefix(sent)))
    providers = {
        "primary": at("openai", "primary"),
        "backup": at("anthropic", "backup", supports_prefill=True),
    }
    rule = {**limits_alternative_rule(["primary"], ["backup"]), "resume_streams": True}
    async with in_memory_detour(config_text(providers, [rule]), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY, "every word exactly once"
    assert stream_errors(response) == []
    assert upstreams.order == ["primary", "backup"]


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_a_stream_stalled_past_stream_idle_timeout_ends_with_an_in_band_timeout(client: str) -> None:
    stall = Stall()
    upstreams = Upstreams(primary=Script(streamed(STORY, keep=4, then=[stall])))
    text = pair(primary={"stream_idle_timeout_secs": 0.05})
    async with in_memory_detour(text, upstreams) as detour:
        response = await stream_as(detour, client)
        counters = await detour.counters()

    assert stall.reached.is_set()
    assert text_of(response, client), "the content before the stall reached the client"
    (error,) = stream_errors(response)
    assert "stalled" in error["message"]
    assert frame_event(frames_of(response)[-1]) == ("error" if client == "anthropic" else None)
    assert not ended_as_success(response, client)
    assert counters["timeouts"] == 1
    assert upstreams.order == ["primary"]


# The error types the Anthropic Messages API uses (https://docs.anthropic.com/en/api/errors).
ANTHROPIC_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
}


async def test_a_stall_is_reported_to_an_anthropic_client_with_an_anthropic_error_type() -> None:
    upstreams = Upstreams(primary=streamed(STORY, keep=4, then=[Stall()]))
    async with in_memory_detour(pair(primary={"stream_idle_timeout_secs": 0.05}), upstreams) as detour:
        response = await detour.messages(stream=True)

    (error,) = stream_errors(response)
    assert "stalled" in error["message"]
    assert error["type"] in ANTHROPIC_ERROR_TYPES


async def test_a_stream_paused_shorter_than_the_idle_timeout_completes() -> None:
    pause = Stall()
    pause.go.set()  # released before the stream reaches it: a pause that never exceeds the timeout

    def paused(request: Any) -> Any:
        frames = stream_frames(request, STORY)
        return sse_response([*frames[:3], pause, *frames[3:]])

    upstreams = Upstreams(primary=paused)
    async with in_memory_detour(pair(primary={"stream_idle_timeout_secs": 0.05}), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert pause.reached.is_set()
    assert openai_text(response) == STORY
    assert response.text.rstrip().endswith("data: [DONE]")


# --- what passes through ----------------------------------------------------------------------------------


async def test_malformed_events_are_dropped_and_counted() -> None:
    garbage = [b"data: {this is not json\n\n", b'data: {"no":"choices"}\n\n']

    def with_garbage(request: Any) -> Any:
        frames = stream_frames(request, STORY)
        # One before the first content event (after the role chunk), one in the middle of the answer.
        return sse_response([frames[0], garbage[0], *frames[1:4], garbage[1], *frames[4:]])

    upstreams = Upstreams(primary=with_garbage)
    async with in_memory_detour(pair(), upstreams) as detour:
        response = await detour.chat(stream=True)
        counters = await detour.counters()

    assert openai_text(response) == STORY
    assert "this is not json" not in response.text
    assert '"no":"choices"' not in response.text
    assert counters["malformed_events"] == 2
    assert response.text.rstrip().endswith("data: [DONE]")


def assert_whole_story_ends_once(response: Any, client: str) -> None:
    """The whole story, no error, and exactly one end marker of the client's dialect, last."""
    frames = frames_of(response)
    assert text_of(response, client) == STORY
    assert stream_errors(response) == []
    if client == "openai":
        assert frames[-1] == "data: [DONE]"
        assert frames.count("data: [DONE]") == 1
    else:
        events = [frame_event(frame) for frame in frames]
        assert events[-1] == "message_stop"
        assert events.count("message_stop") == 1


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_an_openai_stream_without_done_gets_a_proper_end_from_the_sidecar(client: str) -> None:
    def without_done(request: Any) -> Any:
        return sse_response([frame for frame in stream_frames(request, STORY) if frame != DONE])

    upstreams = Upstreams(primary=without_done)
    async with in_memory_detour(pair("openai"), upstreams) as detour:
        response = await stream_as(detour, client)

    assert_whole_story_ends_once(response, client)


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_an_anthropic_stream_without_message_stop_gets_a_proper_end_from_the_sidecar(
    client: str,
) -> None:
    def without_stop(request: Any) -> Any:
        return sse_response([frame for frame in stream_frames(request, STORY) if frame != MESSAGE_STOP])

    upstreams = Upstreams(primary=without_stop)
    async with in_memory_detour(pair("anthropic"), upstreams) as detour:
        response = await stream_as(detour, client)

    assert_whole_story_ends_once(response, client)


async def test_a_same_dialect_stream_is_passed_on_frame_for_frame() -> None:
    sent: list[bytes] = []

    def recorded(request: Any) -> Any:
        sent.extend(stream_frames(request, STORY))
        return sse_response(sent)

    upstreams = Upstreams(primary=recorded)
    async with in_memory_detour(pair("anthropic"), upstreams) as detour:
        response = await detour.messages(stream=True)

    assert response.content == b"".join(sent)


async def test_usage_the_sidecar_asked_for_is_not_shown_to_a_client_that_did_not_ask() -> None:
    upstreams = Upstreams(primary=streamed(STORY))
    async with in_memory_detour(pair(), upstreams) as detour:
        plain = await detour.chat(stream=True)
        asked = await detour.chat(stream=True, stream_options={"include_usage": True})

    assert [body["stream_options"] for body in upstreams.bodies("primary")] == [{"include_usage": True}] * 2
    assert '"usage":{' not in plain.text
    assert '"usage":{' in asked.text
