"""Hypothesis strategies for the property tests: JSON of any shape, valid OpenAI and Anthropic
requests (optionally with one feature the other dialect cannot express, and the words the refusal
must name), valid requests with one part replaced by anything, and streams of either dialect's
events, valid or damaged.

The valid requests follow the API references (roles, content parts and blocks, tool calls and their
results, tools and tool_choice, sampling fields), with ids and texts in any script."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

# --- JSON --------------------------------------------------------------------------------------------

_INT64 = 2**63
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-_INT64, 2**64 - 1)  # the whole range orjson reads
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
    | st.text(max_size=16)
)


def json_values(max_leaves: int = 8, *, keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    key_strategy = st.text(max_size=8) if keys is None else keys
    return st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key_strategy, inner, max_size=4),
        max_leaves=max_leaves,
    )


# Field names the parser and the translators look at, so random objects often mean something to them.
REQUEST_KEYS = st.sampled_from(
    [
        "model", "messages", "stream", "max_tokens", "max_completion_tokens", "role", "content", "type",
        "text", "tool_calls", "tool_call_id", "function", "name", "arguments", "tools", "tool_choice",
        "image_url", "url", "source", "tool_use_id", "input", "system", "stop", "stop_sequences",
        "temperature", "user", "metadata", "stream_options", "n", "thinking",
    ]
) | st.text(max_size=6)  # fmt: skip


def nesting(depth: int) -> Any:
    """A value `depth` arrays deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def replace_somewhere(draw: st.DrawFn, value: Any, replacement: st.SearchStrategy[Any]) -> Any:
    """`value` (JSON) with one node, anywhere in it, replaced by a drawn value: a valid request
    damaged in one place, which reaches the translators' checks far more often than random JSON."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: replace_somewhere(draw, value[key], replacement)}
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        position = draw(st.integers(0, len(value) - 1))
        damaged = replace_somewhere(draw, value[position], replacement)
        return [*value[:position], damaged, *value[position + 1 :]]
    return draw(replacement)


# --- pieces of requests ------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=20)
maybe_empty_texts = st.text(max_size=20)
# Built from plain text strategies rather than st.from_regex, which is several times slower to draw.
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WORD = _LETTERS + "0123456789_"
names = st.builds(operator.add, st.sampled_from(_LETTERS + "_"), st.text(_WORD + "-", max_size=16))
# OpenAI-compatible servers send ids Anthropic refuses (`functions.get_weather:0`); the translator
# makes them safe. Distinct after that, or two calls of one turn would share an id.
tool_ids = st.builds(
    operator.add,
    st.sampled_from(["call_", "toolu_", "functions."]),
    st.text(_WORD + "-.:", min_size=1, max_size=14),
)
arguments = st.dictionaries(st.text(max_size=8), json_values(4), max_size=3)
schemas = st.none() | st.fixed_dictionaries(
    {"type": st.just("object"), "properties": st.dictionaries(names, st.just({"type": "string"}), max_size=3)}
)
http_urls = st.text(_WORD, min_size=1, max_size=12).map(lambda path: f"https://images.example/{path}.png")
media_types = st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"])
base64_data = st.text(_WORD + "+/", min_size=4, max_size=40)


def safe_id(tool_id: str) -> str:
    """How the translators make a tool-call id Anthropic-safe (content.anthropic_tool_id)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in tool_id)


def unique_tool_ids(size: int) -> st.SearchStrategy[list[str]]:
    return st.lists(tool_ids, min_size=size, max_size=size, unique_by=safe_id)


@dataclass(frozen=True)
class GeneratedRequest:
    """A request body, and — when it holds a feature the other dialect cannot express — words the
    translator's refusal must contain."""

    body: dict[str, Any]
    unsupported: str | None = None


# --- OpenAI Chat Completions ---------------------------------------------------------------------------

_OPENAI_UNSUPPORTED: list[tuple[dict[str, Any], str]] = [
    ({"n": 2}, "n > 1"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3, "logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "json_object"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "json_schema"),
    ({"audio": {"voice": "alloy", "format": "mp3"}, "modalities": ["text", "audio"]}, "audio"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "custom"),
]


@st.composite
def openai_user_content(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(texts)
    parts: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["text", "text", "https", "data"]))
        if kind == "text":
            parts.append({"type": "text", "text": draw(maybe_empty_texts)})
        else:
            url = (
                draw(http_urls) if kind == "https" else f"data:{draw(media_types)};base64,{draw(base64_data)}"
            )
            image: dict[str, Any] = {"url": url}
            if draw(st.booleans()):
                image["detail"] = draw(st.sampled_from(["auto", "low", "high"]))
            parts.append({"type": "image_url", "image_url": image})
    return parts


@st.composite
def openai_requests(draw: st.DrawFn) -> GeneratedRequest:
    """A valid Chat Completions request; sometimes with one feature Anthropic cannot express."""
    messages: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        role = draw(st.sampled_from(["system", "developer"]))
        content = draw(
            texts | st.lists(texts.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=2)
        )
        messages.append({"role": role, "content": content})
    for _ in range(draw(st.integers(1, 3))):
        user: dict[str, Any] = {"role": "user", "content": draw(openai_user_content())}
        if draw(st.integers(0, 4)) == 0:
            user["name"] = draw(names)
        messages.append(user)
        if not draw(st.integers(0, 3)):
            continue  # the conversation may end on any user turn
        ids = draw(unique_tool_ids(draw(st.integers(0, 2))))
        said = draw(st.none() | maybe_empty_texts) if ids else draw(texts)
        assistant: dict[str, Any] = {"role": "assistant", "content": said}
        if ids:
            assistant["tool_calls"] = [
                {
                    "id": tool_id,
                    "type": "function",
                    "function": {"name": draw(names), "arguments": orjson.dumps(draw(arguments)).decode()},
                }
                for tool_id in ids
            ]
        messages.append(assistant)
        for tool_id in ids:
            result = draw(texts | st.lists(texts.map(lambda t: {"type": "text", "text": t}), max_size=2))
            messages.append({"role": "tool", "tool_call_id": tool_id, "content": result})
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["gpt-4o", "gpt-4.1-mini", "o3"])),
        "messages": messages,
    }
    tool_names = draw(st.lists(names, max_size=3, unique=True))
    if tool_names:
        tools = []
        for name in tool_names:
            function: dict[str, Any] = {"name": name}
            if (schema := draw(schemas)) is not None:
                function["parameters"] = schema
            if draw(st.booleans()):
                function["description"] = draw(texts)
            tools.append({"type": "function", "function": function})
        body["tools"] = tools
        named = {"type": "function", "function": {"name": draw(st.sampled_from(tool_names))}}
        choice = draw(st.sampled_from([None, "auto", "none", "required", named]))
        if choice is not None:
            body["tool_choice"] = choice
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    optional = {
        "stream": st.none() | st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "stop": texts | st.lists(texts, min_size=1, max_size=4),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_tokens": st.integers(1, 100_000),
        "max_completion_tokens": st.integers(1, 100_000),
        "user": names,
        "seed": st.integers(-(2**31), 2**31),
        "frequency_penalty": st.floats(-2, 2),
        "n": st.just(1),
        "metadata": st.dictionaries(names, texts, max_size=2),
    }
    for field in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=5)):
        body[field] = draw(optional[field])
    unsupported = None
    if draw(st.integers(0, 3)) == 0:
        extra, unsupported = draw(st.sampled_from(_OPENAI_UNSUPPORTED))
        body.update(extra)
    return GeneratedRequest(body, unsupported)


# --- Anthropic Messages --------------------------------------------------------------------------------

_ANTHROPIC_UNSUPPORTED: list[tuple[dict[str, Any], str]] = [
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {}}}}, "output_config.format"),
    ({"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m"}]}, "mcp_servers"),
    ({"container": "container_1"}, "container"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
]


@st.composite
def anthropic_user_blocks(draw: st.DrawFn, results_for: list[str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for tool_id in results_for:
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id}
        content = draw(
            st.none() | texts | st.lists(texts.map(lambda t: {"type": "text", "text": t}), max_size=2)
        )
        if content is not None:
            result["content"] = content
        if draw(st.booleans()):
            result["is_error"] = draw(st.booleans())
        blocks.append(result)
    for _ in range(draw(st.integers(0 if blocks else 1, 2))):
        kind = draw(st.sampled_from(["text", "text", "url", "base64"]))
        if kind == "text":
            blocks.append({"type": "text", "text": draw(texts)})
        elif kind == "url":
            blocks.append({"type": "image", "source": {"type": "url", "url": draw(http_urls)}})
        else:
            source = {"type": "base64", "media_type": draw(media_types), "data": draw(base64_data)}
            blocks.append({"type": "image", "source": source})
    return blocks


@st.composite
def anthropic_requests(draw: st.DrawFn) -> GeneratedRequest:
    """A valid Messages request that ends on a user turn; sometimes with one feature OpenAI cannot
    express (an assistant prefill is one)."""
    messages: list[dict[str, Any]] = []
    pending_results: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        blocks = draw(st.booleans())
        if pending_results or blocks:
            content: Any = draw(anthropic_user_blocks(pending_results))
        else:
            content = draw(texts)
        messages.append({"role": "user", "content": content})
        pending_results = []
        if not draw(st.integers(0, 3)):
            break
        if draw(st.booleans()):
            assistant: Any = draw(texts)
        else:
            assistant = []
            if draw(st.booleans()):
                assistant.append({"type": "thinking", "thinking": draw(texts), "signature": draw(names)})
            assistant.extend({"type": "text", "text": t} for t in draw(st.lists(texts, max_size=2)))
            pending_results = draw(
                st.lists(
                    st.text(_WORD, min_size=4, max_size=16).map("toolu_".__add__),
                    max_size=2,
                    unique=True,
                    min_size=0 if assistant else 1,
                )
            )
            assistant.extend(
                {"type": "tool_use", "id": tool_id, "name": draw(names), "input": draw(arguments)}
                for tool_id in pending_results
            )
        messages.append({"role": "assistant", "content": assistant})
    if messages[-1]["role"] == "assistant":  # tool calls are answered by a user turn
        messages.append({"role": "user", "content": draw(anthropic_user_blocks(pending_results))})
    model = draw(st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5"]))
    body: dict[str, Any] = {"model": model, "max_tokens": draw(st.integers(1, 64_000)), "messages": messages}
    system = draw(st.none() | texts | st.lists(texts.map(lambda t: {"type": "text", "text": t}), max_size=2))
    if system is not None:
        body["system"] = system
    tool_names = draw(st.lists(names, max_size=3, unique=True))
    if tool_names:
        tools = []
        for name in tool_names:
            tool: dict[str, Any] = {"name": name, "input_schema": draw(schemas) or {"type": "object"}}
            if draw(st.booleans()):
                tool["description"] = draw(texts)
            if draw(st.booleans()):
                tool["type"] = "custom"
            tools.append(tool)
        body["tools"] = tools
        choice: dict[str, Any] | None = draw(
            st.sampled_from([None, {"type": "auto"}, {"type": "any"}, {"type": "none"}])
            | st.sampled_from(tool_names).map(lambda n: {"type": "tool", "name": n})
        )
        if choice is not None:
            if choice["type"] != "none" and draw(st.booleans()):
                choice["disable_parallel_tool_use"] = draw(st.booleans())
            body["tool_choice"] = choice
    optional = {
        "stream": st.booleans(),
        "stop_sequences": st.lists(texts, max_size=4),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(1, 500),
        "metadata": st.fixed_dictionaries({"user_id": names}),
        "service_tier": st.sampled_from(["auto", "standard_only"]),
    }
    for field in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)):
        body[field] = draw(optional[field])
    unsupported = None
    variant = draw(st.integers(0, 4))
    if variant == 0:
        extra, unsupported = draw(st.sampled_from(_ANTHROPIC_UNSUPPORTED))
        body.update(extra)
    elif variant == 1:
        body["messages"] = [*messages, {"role": "assistant", "content": draw(texts)}]
        unsupported = "prefill"
    return GeneratedRequest(body, unsupported)


# --- stream events -------------------------------------------------------------------------------------

# Any node of a damaged event may become anything, usage and finish reasons included.
damage = json_values(6, keys=st.text(max_size=8))
# Token counts as the APIs send them, and now and then anywhere in the range orjson reads, so that
# counts whose sum passes 64 bits come up too.
counts = st.integers(0, 2**31) | st.integers(0, 2**64 - 1)
usages_openai = st.fixed_dictionaries(
    {"prompt_tokens": counts, "completion_tokens": counts},
    optional={"prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": counts})},
)
usages_anthropic = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": counts,
        "output_tokens": counts,
        "cache_creation_input_tokens": counts,
        "cache_read_input_tokens": counts,
    },
)


@st.composite
def openai_chunks(draw: st.DrawFn) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    kind = draw(st.sampled_from(["role", "content", "refusal", "tool", "tool", "finish", "usage"]))
    if kind == "role":
        delta = {"role": "assistant", "content": ""}
    elif kind in ("content", "refusal"):
        delta = {kind: draw(maybe_empty_texts)}
    elif kind == "tool":
        call: dict[str, Any] = {"function": {"arguments": draw(maybe_empty_texts)}}
        if draw(st.booleans()):
            call["index"] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            call["id"] = draw(tool_ids)
            call["type"] = "function"
            call["function"]["name"] = draw(names)
        delta = {"tool_calls": [call]}
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
    }
    if kind == "usage":
        chunk.update(choices=[], usage=draw(usages_openai))
    else:
        finish = (
            draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
            if kind == "finish"
            else None
        )
        chunk["choices"] = [
            {"index": draw(st.sampled_from([0, 0, 0, 1])), "delta": delta, "finish_reason": finish}
        ]
    return chunk


@st.composite
def anthropic_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            [
                "message_start", "content_block_start", "content_block_delta", "content_block_delta",
                "content_block_stop", "message_delta", "message_stop", "ping", "error",
            ]
        )
    )  # fmt: skip
    index = draw(st.integers(0, 3))
    if kind == "message_start":
        message: dict[str, Any] = {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": draw(usages_anthropic),
        }  # fmt: skip
        return {"type": kind, "message": message}
    if kind == "content_block_start":
        block = draw(
            st.sampled_from(
                [
                    {"type": "text", "text": ""},
                    {"type": "text", "text": "Hi"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                    {"type": "thinking", "thinking": ""},
                ]
            )
        )
        return {"type": kind, "index": index, "content_block": block}
    if kind == "content_block_delta":
        delta = draw(
            st.fixed_dictionaries({"type": st.just("text_delta"), "text": maybe_empty_texts})
            | st.fixed_dictionaries({"type": st.just("input_json_delta"), "partial_json": maybe_empty_texts})
            | st.fixed_dictionaries({"type": st.just("thinking_delta"), "thinking": maybe_empty_texts})
        )
        return {"type": kind, "index": index, "delta": delta}
    if kind == "content_block_stop":
        return {"type": kind, "index": index}
    if kind == "message_delta":
        reason = draw(
            st.sampled_from([None, "end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"])
        )
        return {
            "type": kind,
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": draw(usages_anthropic),
        }
    if kind == "error":
        return {"type": kind, "error": {"type": "overloaded_error", "message": draw(texts)}}
    return {"type": kind}


@st.composite
def damaged_stream(
    draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]], *, named: bool
) -> list[tuple[str, str | None]]:
    """(data, event name) pairs: mostly the dialect's own events (Anthropic's `named` by their type),
    some damaged in one place, some not JSON objects at all, some named wrongly."""
    stream: list[tuple[str, str | None]] = []
    for _ in range(draw(st.integers(1, 12))):
        payload = draw(events)
        name = payload["type"] if named else None
        shape = draw(st.integers(0, 9))
        if shape <= 5:
            data = orjson.dumps(payload).decode()
        elif shape <= 7:
            data = orjson.dumps(replace_somewhere(draw, payload, damage)).decode()
        elif shape == 8:
            data = draw(st.sampled_from(["[DONE]", "", "{", "null", "[]", '"text"', "1e999", "{}"]))
        else:
            data = draw(st.text(max_size=20))
        if draw(st.integers(0, 5)) == 0:
            name = draw(st.none() | st.sampled_from(["message_start", "error", "ping", "x"]))
        stream.append((data, name))
    return stream
