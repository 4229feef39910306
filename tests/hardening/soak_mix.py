"""What the soak sends and how it judges each answer.

The upstreams misbehave from seeded scripts (429s, 5xx, resets, cut, stalled and malformed
streams); the clients send a seeded mix of both dialects, streaming and not, across more models
than the state tables hold. Every answer must be one of the documented outcomes — a complete
answer, an error in the client's dialect with its documented status, or a stream that reports
its break in-band after a correct prefix — and is counted under that name; anything else is
`unclassified` and fails the soak.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.simulate import (
    Behaviour,
    CutStream,
    Delay,
    MalformedEvent,
    RateLimit,
    Reply,
    ResetConnection,
    ServerError,
    SlowStream,
)

TEXTS = {
    "oa-a": "alpha answers in five words",
    "oa-b": "bravo answers in five words",
    "an-a": "charlie answers in five words",
    "an-b": "delta answers in five words",
}
MODELS = 200  # per family: more candidates than the state tables (sized 20) hold
OPENAI_ERROR_STATUSES = {429, 502, 503, 504}


def primary_script(rng: random.Random, count: int) -> list[Behaviour]:
    """A primary that fails about half the time, in every way the simulator knows."""
    choices: list[tuple[float, Any]] = [
        (0.50, lambda: Reply()),
        (0.08, lambda: RateLimit(retry_after=str(rng.randint(1, 2)))),
        (0.03, lambda: RateLimit(limit_headers=False)),  # no hint: backoff
        (0.10, lambda: ServerError(rng.choice([500, 502, 503, 529]))),
        (0.05, lambda: ResetConnection()),
        (0.07, lambda: CutStream(after_events=rng.randint(1, 4), how=rng.choice(["close", "reset", "end"]))),
        (0.03, lambda: SlowStream(stall_after_events=rng.randint(1, 3), stall_s=2.0)),
        (0.08, lambda: MalformedEvent(after_events=rng.randint(0, 3))),
        (0.06, lambda: Delay(0.02, Reply())),
    ]
    weights = [weight for weight, _ in choices]
    return [rng.choices(choices, weights)[0][1]() for _ in range(count)]


def backup_script(rng: random.Random, count: int) -> list[Behaviour]:
    """A backup that mostly works, so some requests still end with nothing left to try."""
    choices: list[tuple[float, Any]] = [
        (0.86, lambda: Reply()),
        (0.05, lambda: RateLimit(retry_after="1")),
        (0.06, lambda: ServerError(503)),
        (0.03, lambda: ResetConnection()),
    ]
    weights = [weight for weight, _ in choices]
    return [rng.choices(choices, weights)[0][1]() for _ in range(count)]


@dataclass(frozen=True)
class Ask:
    anthropic: bool  # the client's dialect
    stream: bool
    model: str
    abandon: bool  # read the first bytes of the stream, then hang up

    @property
    def path(self) -> str:
        return "/v1/messages" if self.anthropic else "/v1/chat/completions"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say five words."}],
            "stream": self.stream,
        }
        if self.anthropic:
            body["max_tokens"] = 32
        return body


def asks(rng: random.Random, count: int) -> list[Ask]:
    found = []
    for _ in range(count):
        anthropic, stream = rng.random() < 0.5, rng.random() < 0.5
        family = rng.choice(["gpt", "claude"])  # a quarter of the requests cross dialects
        abandon = stream and rng.random() < 0.03
        found.append(Ask(anthropic, stream, f"{family}-soak-{rng.randrange(MODELS)}", abandon))
    return found


# --- judging an answer -----------------------------------------------------------------------------


def classify(ask: Ask, status: int, headers: dict[str, str], body: bytes) -> str:
    """The documented outcome this answer is, or `unclassified: …` saying why it is none."""
    try:
        if status == 200 and not ask.stream:
            return "answered" if _whole_text(ask, body) in TEXTS.values() else "unclassified: wrong text"
        if status == 200:
            return _stream_outcome(ask, body)
        if status in OPENAI_ERROR_STATUSES and _is_error(ask, body):
            if status == 429 and "retry-after" not in headers:
                return "unclassified: 429 without retry-after"
            return f"error {status}"
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unclassified: {type(exc).__name__} {exc}"
    return f"unclassified: status {status}"


def _whole_text(ask: Ask, body: bytes) -> str:
    parsed = orjson.loads(body)
    if ask.anthropic:
        assert parsed["type"] == "message"
        return "".join(block["text"] for block in parsed["content"] if block["type"] == "text")
    assert parsed["object"] == "chat.completion"
    return str(parsed["choices"][0]["message"]["content"])


def _is_error(ask: Ask, body: bytes) -> bool:
    parsed = orjson.loads(body)
    error = parsed.get("error")
    if not isinstance(error, dict) or not error.get("message"):
        return False
    return parsed.get("type") == "error" if ask.anthropic else set(parsed) == {"error"}


def _frames(body: bytes) -> Sequence[tuple[str | None, str]]:
    """(event name, data) of each SSE frame."""
    frames = []
    for raw in body.decode().split("\n\n"):
        event, data = None, []
        for line in raw.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            frames.append((event, "\n".join(data)))
    return frames


def _stream_outcome(ask: Ask, body: bytes) -> str:
    text, ended, error = "", False, False
    for event, data in _frames(body):
        if data == "[DONE]":
            ended = True
            continue
        parsed = orjson.loads(data)
        if ask.anthropic:
            kind = parsed["type"]
            assert event == kind, (event, kind)
            error |= kind == "error"
            ended |= kind == "message_stop"
            if kind == "content_block_delta" and parsed["delta"]["type"] == "text_delta":
                text += parsed["delta"]["text"]
        elif "error" in parsed:
            error = True
        else:
            text += "".join(choice["delta"].get("content") or "" for choice in parsed["choices"])
    if ended and not error:
        return "streamed" if text in TEXTS.values() else "unclassified: a stream ended with the wrong text"
    if error and not ended and any(full.startswith(text) for full in TEXTS.values()):
        return "broken in-band"
    return f"unclassified: stream (ended={ended}, error={error}, text={text!r})"
