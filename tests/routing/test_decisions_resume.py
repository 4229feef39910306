"""Routing decisions for `resume_streams: true`, through the transport seam: a stream cut after
content reached the client is continued by the next candidate — from an assistant prefill where the
provider `supports_prefill`, else from scratch and only past the text already sent, and only if the
new answer begins with it. A resume that fails, stalls or ends early never ends as a success, and a
refusal never replaces the original error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from sidecar.simulate.behaviours import ToolCall
from tests.support.memory_transport import (
    Script,
    Stall,
    Upstreams,
    anthropic_at,
    anthropic_text,
    connection_reset,
    error,
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
    streamed,
)
from tests.support.running import config_text, limits_alternative_rule

STORY = "Once upon a time there was a sidecar that never gave up on a story."
SENT = "Once upon a"  # what the client has when an OpenAI stream of STORY is cut after 4 frames
REST = STORY.removeprefix(SENT)


def cut_openai() -> Script:
    """An OpenAI stream of STORY cut by a connection reset once the client has SENT."""
    return Script(streamed(STORY, keep=4, then=[connection_reset()]))


def resuming(providers: dict[str, dict[str, Any]]) -> str:
    """The first provider is the primary, the others alternatives, in order; streams are resumed."""
    first, *rest = providers
    rule = {**limits_alternative_rule([first], rest), "resume_streams": True}
    return config_text(providers, [rule])


def claude(name: str = "backup", **settings: Any) -> dict[str, Any]:
    return anthropic_at(name, api_key="sk-ant", model_map={"gpt-4o": "claude-sonnet-4-5"}, **settings)


def succeeded(response: Any) -> bool:
    return stream_errors(response) == [] and response.text.rstrip().endswith("data: [DONE]")


# --- continuing -------------------------------------------------------------------------------------------


async def test_a_provider_that_supports_prefill_continues_and_only_the_continuation_is_streamed() -> None:
    upstreams = Upstreams(primary=cut_openai(), backup=streamed(REST))
    providers = {"primary": openai_at("primary"), "backup": claude(supports_prefill=True)}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY, "every word exactly once"
    assert openai_finish(response) == "stop"
    assert succeeded(response)
    sent = upstreams.bodies("backup")[0]
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": SENT},
    ], "the original request, translated, with the text already sent as a prefill"
    assert upstreams.order == ["primary", "backup"]


async def test_a_prefill_leaves_out_trailing_white_space_and_the_continuation_does_not_repeat_it() -> None:
    # The client has "Once upon " (the cut came after a lone-space delta); Anthropic rejects a
    # prefill ending in white space, so it gets "Once upon" and its answer repeats the space.
    upstreams = Upstreams(
        primary=Script(streamed("Once upon ", keep=4, then=[connection_reset()])),
        backup=streamed(" a time."),
    )
    providers = {"primary": openai_at("primary"), "backup": claude(supports_prefill=True)}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert upstreams.bodies("backup")[0]["messages"][-1] == {"role": "assistant", "content": "Once upon"}
    assert openai_text(response) == "Once upon a time."
    assert succeeded(response)


@pytest.mark.parametrize("backup", [openai_at("backup"), claude()], ids=["openai", "anthropic"])
async def test_without_prefill_a_new_answer_is_passed_on_only_beyond_the_text_already_sent(
    backup: dict[str, Any],
) -> None:
    upstreams = Upstreams(primary=cut_openai(), backup=streamed(STORY))
    async with in_memory_detour(
        resuming({"primary": openai_at("primary"), "backup": backup}), upstreams
    ) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY, "every word exactly once"
    assert succeeded(response)
    assert upstreams.bodies("backup")[0]["messages"] == [{"role": "user", "content": "Hello"}], "no prefill"


async def test_an_anthropic_client_gets_the_continuation_as_more_of_the_same_message() -> None:
    upstreams = Upstreams(
        primary=Script(streamed(STORY, keep=6, then=[connection_reset()])), backup=streamed(STORY)
    )
    providers = {"primary": anthropic_at("primary"), "backup": anthropic_at("backup")}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.messages(stream=True)

    events = [frame_event(frame) for frame in frames_of(response)]
    assert anthropic_text(response) == STORY
    assert events.count("message_start") == 1
    assert events[-1] == "message_stop"
    (stop,) = [frame_data(frame) for frame in frames_of(response) if frame_event(frame) == "message_delta"]
    assert stop["delta"]["stop_reason"] == "end_turn"
    assert stream_errors(response) == []


OPENAI_ERROR_EVENT = (
    b'data: {"error":{"message":"The server had an error while processing your request.",'
    b'"type":"server_error","param":null,"code":null}}\n\n'
)


@pytest.mark.parametrize(
    ("ending", "primary_settings"),
    [
        (lambda: [connection_reset()], {}),
        (lambda: [Stall()], {"stream_idle_timeout_secs": 0.05}),
        (lambda: [], {}),
        (lambda: [OPENAI_ERROR_EVENT], {}),
    ],
    ids=["cut", "stall", "early-end", "error-event"],
)
async def test_a_stream_broken_mid_answer_in_any_way_is_resumed_and_the_break_is_not_shown(
    ending: Callable[[], list[Any]], primary_settings: dict[str, Any]
) -> None:
    upstreams = Upstreams(primary=Script(streamed(STORY, keep=4, then=ending())), backup=streamed(STORY))
    providers = {"primary": openai_at("primary", **primary_settings), "backup": openai_at("backup")}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY
    assert succeeded(response), "no error frame: the resume answered in its place"
    assert upstreams.order == ["primary", "backup"]


async def test_a_new_answer_beginning_with_exactly_the_sent_text_is_spliced_on_whatever_follows() -> None:
    upstreams = Upstreams(primary=cut_openai(), backup=streamed("Once upon a midnight dreary."))
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup")}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == "Once upon a midnight dreary."
    assert succeeded(response)


@pytest.mark.parametrize(
    "declines",
    [rate_limit("30"), server_error(503), streamed(STORY, keep=2, then=[connection_reset()])],
    ids=["429", "503", "broken-before-new-text"],
)
async def test_a_resuming_candidate_that_fails_before_new_text_is_passed_over_for_the_next(
    declines: Any,
) -> None:
    upstreams = Upstreams(primary=cut_openai(), backup=declines, third=streamed(STORY))
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup"), "third": openai_at("third")}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == STORY
    assert succeeded(response)
    assert upstreams.order[0] == "primary"
    assert set(upstreams.order[1:-1]) == {"backup"}, "however often the backup is tried (retries)"
    assert upstreams.order[-1] == "third"


# --- when the resume cannot help: the original error -----------------------------------------------------


def original_error_only(response: Any) -> bool:
    """The client's stream ends with exactly one error: the one for the primary's cut."""
    (error_body,) = stream_errors(response)
    return "broke" in error_body["message"]


async def test_a_new_answer_that_diverges_is_not_spliced_on_and_the_original_error_is_reported() -> None:
    upstreams = Upstreams(primary=cut_openai(), backup=streamed("Long ago, in a cluster far away."))
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup")}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == SENT, "nothing of the other answer reaches the client"
    assert original_error_only(response)
    assert not succeeded(response)
    assert upstreams.order == ["primary", "backup"]


async def test_a_refusal_by_the_resuming_provider_never_replaces_the_original_error() -> None:
    refusal = error(400, "invalid_request_error", "Output blocked by content filtering policy")
    upstreams = Upstreams(primary=cut_openai(), backup=refusal)
    providers = {"primary": openai_at("primary"), "backup": claude(supports_prefill=True)}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert "content filtering" not in response.text
    assert original_error_only(response)
    assert openai_text(response) == SENT


async def test_a_refusal_inside_the_resumed_answer_never_replaces_the_original_error() -> None:
    def refuses(request: Any) -> Any:
        chunk = {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"refusal": "I can't continue that."}, "finish_reason": None}],
        }
        role = {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        return sse_response(
            [b"data: " + orjson.dumps(c) + b"\n\n" for c in (role, chunk)] + [b"data: [DONE]\n\n"]
        )

    upstreams = Upstreams(primary=cut_openai(), backup=refuses)
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup", supports_prefill=True)}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert "continue that" not in response.text
    assert original_error_only(response)


@pytest.mark.parametrize(
    "repeats",
    [0, 3],  # silent, or "Once upon" (only text the client already has) before the stall
    ids=["silent", "repeating the sent text"],
)
async def test_a_resume_that_stalls_before_new_text_leaves_the_client_with_the_original_error(
    repeats: int,
) -> None:
    stall = Stall()
    backup = streamed(STORY, keep=repeats, then=[stall]) if repeats else silent(stall)
    upstreams = Upstreams(primary=cut_openai(), backup=backup)
    providers = {
        "primary": openai_at("primary"),
        "backup": openai_at("backup", first_token_timeout_secs=0.05),
    }
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert stall.reached.is_set()
    assert openai_text(response) == SENT
    assert original_error_only(response)


@pytest.mark.parametrize(
    ("then", "message"),
    [
        (lambda: [connection_reset()], "broke"),
        (lambda: [], "ended before the answer was complete"),
        (lambda: [Stall()], "stalled"),
    ],
    ids=["breaks", "ends-early", "stalls"],
)
async def test_a_resume_that_fails_after_new_text_ends_with_its_own_in_band_error(
    then: Callable[[], list[Any]], message: str
) -> None:
    # The backup answers from scratch: "Once upon a" (held back), then " time there" (new), then fails.
    upstreams = Upstreams(primary=cut_openai(), backup=streamed(STORY, keep=6, then=then()))
    providers = {
        "primary": openai_at("primary"),
        "backup": openai_at("backup", stream_idle_timeout_secs=0.05),
    }
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    assert openai_text(response) == "Once upon a time there"
    (error_body,) = stream_errors(response)
    assert message in error_body["message"]
    assert not succeeded(response)
    assert openai_finish(response) is None


async def test_a_stream_that_was_more_than_text_is_not_resumed() -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="call_1")
    upstreams = Upstreams(primary=Script(streamed(None, tool_call=call, keep=3, then=[connection_reset()])))
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup")}
    async with in_memory_detour(resuming(providers), upstreams) as detour:
        response = await detour.chat(stream=True)

    (error_body,) = stream_errors(response)
    assert "broke" in error_body["message"]
    assert upstreams.order == ["primary"], "a tool call cannot be continued from text"


async def test_without_resume_streams_a_cut_stream_is_not_continued() -> None:
    upstreams = Upstreams(primary=cut_openai(), backup=streamed(STORY))
    providers = {"primary": openai_at("primary"), "backup": openai_at("backup")}
    text = config_text(providers, [limits_alternative_rule(["primary"], ["backup"])])
    async with in_memory_detour(text, upstreams) as detour:
        response = await detour.chat(stream=True)

    assert original_error_only(response)
    assert upstreams.order == ["primary"]
