"""Keys never leave the place they were meant for (docs/architecture.md §4, docs/operations.md).

One `detour serve --log-level debug`, exporting traces and metrics to an in-process OTLP receiver
and serving Prometheus, goes through a whole bad day: 429s, 5xx, an upstream that resets, streams
that fail over, a provider's own 401, nothing left to serve, invalid configs (a key behind a YAML
tag, in a number, under a misspelt name…), a file that cannot be read, then a valid config again.
Afterwards every log line, span, metric point, answer, `/admin/state` and the scrape are searched
for the distinctive secrets — and each simulated provider must have seen only its own credential.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sidecar.simulate import (
    MalformedEvent,
    RateLimit,
    Reply,
    ResetConnection,
    ServerError,
    SimulatedProvider,
)
from tests.hardening.serving import Serving, detour_serve
from tests.support.running import config_text, limits_alternative_rule, provider
from tests.telemetry.receivers import OtlpGrpcReceiver, Received

MARK = "DETOURSECRET"
OA_KEY = f"sk-{MARK}-openai-7f3a9c2e"  # reaches the config through ${DETOUR_TEST_OA_KEY}
AN_KEY = f"sk-ant-{MARK}-anthropic-51be04d9"  # written in the config itself
GATEWAY = f"{MARK}-gateway-token-a41f"  # a custom header of the Anthropic provider
CLIENT_OA = f"sk-{MARK}-client-openai-0d1e66"
CLIENT_AN = f"sk-ant-{MARK}-client-anthropic-77c2"
WRONG_CLIENT_OA = f"sk-{MARK}-client-wrong-9b0b"
YAML_ONLY = f"sk-{MARK}-only-in-bad-configs-3c5d"
ENV = {
    "DETOUR_TEST_OA_KEY": OA_KEY,
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_METRIC_EXPORT_INTERVAL": "3600000",  # metrics leave at shutdown
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
}
# Which credentials each upstream may see: its own, or the client's of its own dialect.
ALLOWED = {
    "oa-keyed": {OA_KEY},
    "an-keyed": {AN_KEY, GATEWAY},
    "oa-open": {CLIENT_OA, WRONG_CLIENT_OA},
    "an-open": {CLIENT_AN},
}
SECRETS = {OA_KEY, AN_KEY, GATEWAY, CLIENT_OA, CLIENT_AN, WRONG_CLIENT_OA, YAML_ONLY}
OPENAI_CLIENT = {"authorization": f"Bearer {CLIENT_OA}"}
ANTHROPIC_CLIENT = {"x-api-key": CLIENT_AN, "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
ERROR_EVENT = b'data: {"error":{"message":"The server is overloaded","type":"server_error"}}\n\n'


def routes(sims: dict[str, SimulatedProvider], *, edit: str = "") -> str:
    providers = {
        "oa-keyed": provider("openai", sims["oa-keyed"].base_url, api_key="${DETOUR_TEST_OA_KEY}"),
        "an-keyed": provider(
            "anthropic", sims["an-keyed"].base_url, api_key=AN_KEY, headers={"x-gateway-token": GATEWAY}
        ),
        "oa-open": provider("openai", sims["oa-open"].base_url),
        "an-open": provider("anthropic", sims["an-open"].base_url),
    }
    for settings in providers.values():
        settings["retry_backoff_ms"] = 5
    rules = [
        {**limits_alternative_rule(["oa-keyed"], ["oa-open", "an-keyed"], pattern="^gpt-"), "name": "gpt"},
        {
            **limits_alternative_rule(["an-keyed"], ["an-open", "oa-keyed"], pattern="^claude-"),
            "name": "claude",
        },
    ]
    return config_text(providers, rules) + edit


# Invalid configs: each puts a secret where the loader must not quote it; the problem begins with
# the path of the key (or, where YAML itself fails, its position; for !!binary either, as long as
# test_config_fuzz's xfail on tag errors without a path stands).
BAD_EDITS: list[tuple[str, str, str | tuple[str, ...]]] = [
    ("tag", f"    api_key: !!int {YAML_ONLY}\n", "providers.oa-keyed.api_key: "),
    (
        "binary",
        f"    api_key: !!binary {YAML_ONLY}\n",
        ("providers.oa-keyed.api_key: ", "invalid YAML at line 5, column 14: "),
    ),
    ("number", f"    timeout_secs: {YAML_ONLY}\n", "providers.oa-keyed.timeout_secs: "),
    (
        "env-number",
        "    connect_timeout_secs: ${DETOUR_TEST_OA_KEY}\n",
        "providers.oa-keyed.connect_timeout_secs: ",
    ),
    ("misspelt", f"    api_kee: {YAML_ONLY}\n", "providers.oa-keyed.api_kee: "),
    ("list", f"    headers: [{YAML_ONLY}]\n", "providers.oa-keyed.headers: "),
    ("syntax", f'    api_key: "{YAML_ONLY}\n', "invalid YAML at line "),
]


def bad_config(sims: dict[str, SimulatedProvider], edit: str, index: int) -> str:
    """The valid config with one provider key replaced by `edit` (under the first provider)."""
    text = routes(sims, edit=f"# bad config {index}\n")
    first = "    api_key: ${DETOUR_TEST_OA_KEY}\n"
    assert first in text
    return text.replace(first, edit, 1)


@dataclass
class Day:
    """Everything the bad day left behind."""

    serving: Serving
    sims: dict[str, SimulatedProvider]
    received: Received
    answers: list[httpx.Response] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    problems: list[list[str]] = field(default_factory=list)  # of each invalid config, as /admin/state said
    pages: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


async def bad_day(serving: Serving, sims: dict[str, SimulatedProvider], day: Day) -> None:
    async with httpx.AsyncClient(base_url=serving.url, timeout=10) as client:

        async def ask(body: dict[str, Any], *, anthropic: bool = False, **headers: str) -> httpx.Response:
            path = "/v1/messages" if anthropic else "/v1/chat/completions"
            sent = {**(ANTHROPIC_CLIENT if anthropic else OPENAI_CLIENT), **headers}
            response = await client.post(path, json=body, headers=sent)
            day.answers.append(response)
            return response

        def doing(**behaviours: Any) -> None:
            for name, sim in sims.items():
                sim.default = behaviours.get(name.replace("-", "_"), Reply())

        doing(oa_keyed=RateLimit(retry_after="0"))
        assert (await ask(CHAT)).headers["x-detour-provider"] == "oa-open"
        doing(oa_keyed=ServerError(500))
        assert (await ask(CHAT)).headers["x-detour-provider"] == "oa-open"
        doing(oa_keyed=ResetConnection())
        assert (await ask(CHAT)).headers["x-detour-provider"] == "oa-open"
        doing(oa_keyed=MalformedEvent(after_events=0, garbage=ERROR_EVENT))
        streamed = await ask({**CHAT, "stream": True})
        assert streamed.headers["x-detour-provider"] == "oa-open", "the stream failed over"
        assert streamed.text.rstrip().endswith("data: [DONE]")
        doing(an_keyed=RateLimit(retry_after="0"), an_open=ServerError(503))
        crossed = await ask({**MESSAGE, "stream": True}, anthropic=True)
        assert crossed.headers["x-detour-provider"] == "oa-keyed", "served across dialects, own key"
        doing(oa_keyed=RateLimit(retry_after="0"))
        refused = await ask(CHAT, authorization=f"Bearer {WRONG_CLIENT_OA}")
        assert refused.status_code == 401, "the provider's own 401 reaches the client"
        doing(oa_keyed=ServerError(503), oa_open=ServerError(503), an_keyed=ServerError(503))
        assert (await ask(CHAT)).status_code == 502
        doing(an_keyed=ServerError(500), an_open=ServerError(500), oa_keyed=ServerError(500))
        assert (await ask(MESSAGE, anthropic=True)).status_code == 502
        doing()

        for index, (_, edit, _) in enumerate(BAD_EDITS):
            day.outcomes.append(await serving.reload(bad_config(sims, edit, index)))
            day.problems.append((await serving.state())["reload"]["last_problems"])
        unreadable = routes(sims).encode() + b"# " + YAML_ONLY.encode() + b" \xff\xfe not UTF-8\n"
        day.outcomes.append(await serving.reload(unreadable))
        assert (await ask(CHAT)).headers["x-detour-provider"] == "oa-keyed", "the last good config serves"
        day.outcomes.append(await serving.reload(routes(sims, edit="# valid again\n")))
        assert (await ask(CHAT)).headers["x-detour-provider"] == "oa-keyed"

        day.state = await serving.state()
        for page in ("/admin/state", "/v1/models", "/readyz", "/healthz"):
            day.pages[page] = (await client.get(page, headers=OPENAI_CLIENT)).text
        scrape = serving.logged_match(r"Prometheus scrape on (http://\S+)")[1]
        day.pages["/metrics"] = (await client.get(scrape)).text


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def day(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Day]:
    with OtlpGrpcReceiver() as receiver:
        async with contextlib.AsyncExitStack() as stack:
            sims = {
                "oa-keyed": SimulatedProvider("openai", name="oa-keyed", api_key=OA_KEY),
                "an-keyed": SimulatedProvider("anthropic", name="an-keyed", api_key=AN_KEY),
                "oa-open": SimulatedProvider("openai", name="oa-open", api_key=CLIENT_OA),
                "an-open": SimulatedProvider("anthropic", name="an-open", api_key=CLIENT_AN),
            }
            for sim in sims.values():
                await stack.enter_async_context(sim)
            env = {**os.environ, **ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
            directory: pathlib.Path = tmp_path_factory.mktemp("secrets")
            flags = ("--log-level", "debug", "--metrics-port", "0", "--metrics-host", "127.0.0.1")
            async with detour_serve(routes(sims), directory, *flags, env=env) as serving:
                found = Day(serving, sims, receiver.received)
                await bad_day(serving, sims, found)
        # The process has exited (SIGTERM): its telemetry is flushed and its log read to the end.
        yield found


def leaks(text: str) -> set[str]:
    return {secret for secret in SECRETS if secret in text} | ({MARK} if MARK in text else set())


def test_the_bad_day_happened(day: Day) -> None:
    """So the searches below cannot pass vacuously."""
    statuses = [answer.status_code for answer in day.answers]
    failovers = sum(p.value for p in day.received.points() if p.metric == "detour.failovers")
    reload = day.state["reload"]

    assert statuses.count(200) >= 7
    assert statuses.count(502) == 2
    assert 401 in statuses
    assert failovers >= 8, failovers
    assert day.state["counters"]["retries"] >= 1
    assert day.outcomes == ["rejected"] * len(BAD_EDITS) + ["unreadable", "applied"]
    assert reload["rejected"] == len(BAD_EDITS)
    assert reload["applied"] == 2
    assert reload["last_result"] == "applied"
    assert any(event == "detour.failover" for span in day.received.spans() for event, _ in span.events)
    assert "detour_failovers_total" in day.pages["/metrics"]
    assert any(" DEBUG " in line for line in day.serving.log), "the log was written at debug level"


@pytest.mark.parametrize("index", range(len(BAD_EDITS)), ids=[edit[0] for edit in BAD_EDITS])
def test_each_invalid_config_was_rejected_by_path_without_its_value(day: Day, index: int) -> None:
    _, _, where = BAD_EDITS[index]
    problems = day.problems[index]

    assert len(problems) == 1, problems
    assert problems[0].startswith(where), problems  # str.startswith takes a tuple of prefixes too
    assert not leaks(repr(problems)), problems


def test_no_log_line_holds_a_secret(day: Day) -> None:
    assert [line for line in day.serving.log if leaks(line)] == []


def test_no_span_or_metric_holds_a_secret(day: Day) -> None:
    spans = day.received.spans()
    points = day.received.points()

    assert spans
    assert points
    for span in spans:
        exported = repr((span.name, span.attributes, span.events, span.resource))
        assert not leaks(exported), exported
    for point in points:
        assert not leaks(repr((point.metric, point.attributes))), point


def test_no_answer_holds_a_secret(day: Day) -> None:
    for answer in day.answers:
        assert not leaks(answer.text), answer.text
        assert not leaks(repr(answer.headers.raw)), answer.headers


def test_no_page_holds_a_secret(day: Day) -> None:
    assert set(day.pages) == {"/admin/state", "/v1/models", "/readyz", "/healthz", "/metrics"}
    for page, text in day.pages.items():
        assert not leaks(text), page


def test_every_provider_saw_only_its_own_credential(day: Day) -> None:
    for name, sim in day.sims.items():
        seen: set[str] = set()
        for request in sim.requests:
            seen |= leaks(repr(request.headers)) - {MARK}
            assert not leaks(repr(request.body)), (name, request.body)

        assert seen, f"{name} was sent a credential"
        assert seen <= ALLOWED[name], (name, seen - ALLOWED[name])
