"""The requests every benchmark sends, defined once so the direct and the through-Detour runs send
byte-identical bodies and headers (only the host and port differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str  # on Detour; the upstream serves the same path (the direct URL of `direct_path`)
    body: bytes
    headers: dict[str, str]
    direct_path: str | None = None  # when the direct call goes elsewhere (the failover's 429)

    def direct_url(self, upstream_url: str) -> str:
        return upstream_url + (self.direct_path or self.path)

    def detour_url(self, detour_url: str) -> str:
        return detour_url + self.path


def _openai(model: str, **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": _MESSAGES, "max_tokens": 16, **extra})


OPENAI_HEADERS = {"content-type": "application/json", "authorization": "Bearer bench"}
ANTHROPIC_HEADERS = {
    "content-type": "application/json",
    "x-api-key": "bench",
    "anthropic-version": "2023-06-01",
}

OPENAI = Scenario("openai", "/v1/chat/completions", _openai("gpt-4o-mini"), OPENAI_HEADERS)
OPENAI_STREAM = Scenario(
    "openai-stream", "/v1/chat/completions", _openai("gpt-4o-mini", stream=True), OPENAI_HEADERS
)
ANTHROPIC = Scenario(
    "anthropic",
    "/v1/messages",
    orjson.dumps({"model": "claude-3-5-haiku", "max_tokens": 16, "messages": _MESSAGES}),
    ANTHROPIC_HEADERS,
)
# Through Detour: the primary answers 429 (retry-after 0), the alternative answers. Direct: one
# round trip to the 429 endpoint, i.e. the price a failover may add ("one upstream round trip").
FAILOVER = Scenario(
    "failover",
    "/v1/chat/completions",
    _openai("failover"),
    OPENAI_HEADERS,
    direct_path="/429/v1/chat/completions",
)

BY_NAME = {s.name: s for s in (OPENAI, OPENAI_STREAM, ANTHROPIC, FAILOVER)}
