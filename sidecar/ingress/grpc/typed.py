"""The typed, dialect-neutral chat of `Gateway.Chat` / `ChatStream` (docs/grpc.md, "Typed chat"),
as pure functions: a `ChatRequest` in, a request body of one dialect out, and that dialect's answer
back to a `ChatResponse` or `ChatChunk`s.

A typed request is written once, as an OpenAI Chat Completions body (`openai_body`); when the
candidate expected to serve it speaks Anthropic (`pick_dialect`), the dialects' own translator
(`openai_to_anthropic_request`) makes the Anthropic body, so that candidate receives it untranslated
and every other candidate goes through the same translation as an HTTP request would. Answers come
back in the dialect the request was built in; an Anthropic one is read through the dialects' own
`anthropic_to_openai_response` / `AnthropicToOpenAIStream`, so there is one reader of answers
(`chat_response`, `TypedStream`) and usage and finish reasons mean the same whoever answered:

| ChatRequest                              | OpenAI body                                                  |
|------------------------------------------|--------------------------------------------------------------|
| model, max_tokens (0: absent)            | model, max_tokens                                            |
| temperature (when set), stop             | temperature (float32 rounded to 7 digits), stop              |
| tools {name, description,                | tools [{type function, function {name, description,          |
| parameters_json}                         | parameters (the JSON parsed; it must be an object)}}]        |
| tool_choice "", auto, none, required, X  | absent, auto, none, required, {type function, function {X}}  |
| message system / developer               | {role system, content: its text}                             |
| message user: text / image parts         | content: the text alone, else [text, image_url {url}] parts  |
| Image url / data + media_type            | the URL / `data:<media_type>;base64,<data>`                  |
| message assistant: text, tool_calls      | content (null without text), tool_calls [{id, function}]     |
| message tool: tool_call_id, text         | {role tool, tool_call_id, content}                           |
| (ChatStream)                             | stream true, stream_options.include_usage true               |

| OpenAI answer                            | ChatResponse / ChatChunk                                     |
|------------------------------------------|--------------------------------------------------------------|
| choices[0].message content (or refusal)  | message {role assistant, parts [text]}                       |
| tool_calls [{id, function}]              | tool_calls {id, name, arguments_json, index}                 |
| finish_reason, id                        | finish_reason (stop, length, tool_calls, content_filter), id |
| usage prompt / completion tokens         | usage input (cached included) / output tokens                |
| chunk delta content, tool_calls, finish  | one ChatChunk each: text_delta, tool_call_delta, finish_reason|
| usage chunk                              | ChatChunk {usage}                                            |

Input Detour cannot turn into a request raises `RequestError` (INVALID_ARGUMENT), naming the field.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

from sidecar.dialects import Dialect
from sidecar.dialects.anthropic_to_openai_response import anthropic_to_openai_response
from sidecar.dialects.anthropic_to_openai_stream import AnthropicToOpenAIStream
from sidecar.dialects.openai_to_anthropic_request import openai_to_anthropic_request
from sidecar.dialects.sse import SseDecoder
from sidecar.dialects.stream_events import EventKind, classify_event, stream_error
from sidecar.errors import RequestError, TranslationError
from sidecar.ingress.grpc._generated import gateway_pb2 as pb
from sidecar.routing.strategies import Candidate, Rotations, match_rule, plan
from sidecar.routing.table import RouteTable

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TOOL_CHOICES = frozenset({"auto", "none", "required"})


def pick_dialect(table: RouteTable | None, model: str, limited: Callable[[Candidate], bool]) -> Dialect:
    """The dialect of the first candidate the rule lists for `model` that is not `limited` (in the
    order listed: a rotating strategy's rotation is not advanced), else of its first candidate.
    Without a config or a rule, OpenAI: the router then answers 503 or NOT_FOUND anyway."""
    rule = match_rule(table.rules, model) if table is not None else None
    if table is None or rule is None:
        return Dialect.OPENAI
    candidates = plan(rule, model, table.providers, Rotations())
    chosen = next((candidate for candidate in candidates if not limited(candidate)), candidates[0])
    return table.providers[chosen.provider_id].type


def chat_body(
    request: pb.ChatRequest, dialect: Dialect, *, stream: bool, default_max_tokens: int
) -> tuple[Dialect, dict[str, Any]]:
    """The request body `request` stands for, in `dialect` when it can be expressed there, else in
    OpenAI's — the router then skips the candidates that cannot serve it and, when none can, answers
    INVALID_ARGUMENT naming why, as for any request (docs/architecture.md §3)."""
    body = openai_body(request, stream=stream)
    if dialect is Dialect.OPENAI:
        return dialect, body
    try:
        translated = openai_to_anthropic_request(
            body, upstream_model=request.model, default_max_tokens=default_max_tokens
        )
    except TranslationError:
        return Dialect.OPENAI, body
    return dialect, translated


def openai_body(request: pb.ChatRequest, *, stream: bool) -> dict[str, Any]:
    if not request.model:
        raise RequestError("'model' is required", param="model")
    if not request.messages:
        raise RequestError("'messages' must hold at least one message", param="messages")
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(message, f"messages[{i}]") for i, message in enumerate(request.messages)],
    }
    if request.max_tokens < 0:
        raise RequestError("'max_tokens' must not be negative", param="max_tokens")
    if request.max_tokens:
        body["max_tokens"] = request.max_tokens
    if request.HasField("temperature"):
        # A float32 on the wire: 0.7 arrives as 0.699999988; providers should read what was meant.
        body["temperature"] = float(f"{request.temperature:.7g}")
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(request.tools)]
    if request.tool_choice:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice if choice in _TOOL_CHOICES else {"type": "function", "function": {"name": choice}}
        )
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _message(message: pb.Message, where: str) -> dict[str, Any]:
    role = message.role
    if role in _SYSTEM_ROLES:
        return {"role": "system", "content": _text(message, where)}
    if role == "user":
        return {"role": "user", "content": _user_content(message, where)}
    if role == "assistant":
        text = _text(message, where)
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        if message.tool_calls:
            out["tool_calls"] = [
                _tool_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(message.tool_calls)
            ]
        return out
    if role == "tool":
        if not message.tool_call_id:
            raise RequestError(f"{where}: a tool message needs 'tool_call_id'", param=f"{where}.tool_call_id")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": _text(message, where)}
    raise RequestError(
        f"{where}: role {role!r} is not one of system, user, assistant, tool", param=f"{where}.role"
    )


def _text(message: pb.Message, where: str) -> str:
    """The message's text; only user messages may hold images."""
    texts = []
    for i, part in enumerate(message.parts):
        if part.WhichOneof("kind") != "text":
            raise RequestError(f"{where}.parts[{i}]: a {message.role} message holds text only")
        texts.append(part.text)
    return "".join(texts)


def _user_content(message: pb.Message, where: str) -> str | list[dict[str, Any]]:
    parts = message.parts
    if len(parts) == 1 and parts[0].WhichOneof("kind") == "text":
        text: str = parts[0].text
        return text
    content: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        kind = part.WhichOneof("kind")
        if kind == "text":
            content.append({"type": "text", "text": part.text})
        elif kind == "image":
            url = _image_url(part.image, f"{where}.parts[{i}]")
            content.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise RequestError(f"{where}.parts[{i}]: an empty part")
    return content


def _image_url(image: pb.Image, where: str) -> str:
    source = image.WhichOneof("source")
    if source == "url":
        return image.url
    if source == "data":
        if not image.media_type:
            raise RequestError(f"{where}.image: image data needs its 'media_type' (image/png, ...)")
        return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
    raise RequestError(f"{where}.image: set 'url' or 'data'")


def _tool(tool: pb.Tool, where: str) -> dict[str, Any]:
    if not tool.name:
        raise RequestError(f"{where}: a tool needs a 'name'", param=f"{where}.name")
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters_json:
        function["parameters"] = _json_object(tool.parameters_json, f"{where}.parameters_json")
    return {"type": "function", "function": function}


def _tool_call(call: pb.ToolCall, where: str) -> dict[str, Any]:
    if not call.id or not call.name:
        raise RequestError(f"{where}: a tool call needs its 'id' and 'name'")
    arguments = call.arguments_json or "{}"
    _json_object(arguments, f"{where}.arguments_json")
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"{where}: not valid JSON ({exc})", param=where) from exc
    if not isinstance(value, dict):
        raise RequestError(f"{where}: must be a JSON object", param=where)
    return value


# --- answers ------------------------------------------------------------------------------------


def chat_response(dialect: Dialect, answer: dict[str, Any], *, created: int) -> pb.ChatResponse:
    """A whole answer (a 2xx body, already checked to be an answer of `dialect`) → ChatResponse."""
    if dialect is Dialect.ANTHROPIC:
        answer = anthropic_to_openai_response(answer, created=created)
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    typed = pb.Message(role="assistant")
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        typed.parts.append(pb.Part(text=text))
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        typed.tool_calls.append(
            pb.ToolCall(
                id=call.get("id") or "",
                name=function.get("name") or "",
                arguments_json=function.get("arguments") or "",
                index=index,
            )
        )
    response = pb.ChatResponse(
        message=typed, finish_reason=choice.get("finish_reason") or "", id=str(answer.get("id") or "")
    )
    usage = answer.get("usage")
    if isinstance(usage, dict):
        response.usage.CopyFrom(_usage(usage))
    return response


def _usage(usage: dict[str, Any]) -> pb.Usage:
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return pb.Usage(input_tokens=int(prompt), output_tokens=int(completion))


class TypedStream:
    """The SSE bytes of a routed stream, in the dialect the request was built in → ChatChunks.

    Sans-IO: `feed` it the relay's bytes. `complete` says whether the answer ended as it should
    (`[DONE]` / `message_stop`, after which an Anthropic stream's usage has been given); `error`
    holds the message of an in-band error event (a stream broken after its first chunk,
    docs/architecture.md §3). Either way short of complete, the shell ends the call UNAVAILABLE."""

    __slots__ = ("_anthropic", "_decoder", "_dialect", "complete", "error")

    def __init__(self, dialect: Dialect, *, created: int) -> None:
        self._dialect = dialect
        self._decoder = SseDecoder()
        self._anthropic = (
            AnthropicToOpenAIStream(created=created, include_usage=True)
            if dialect is Dialect.ANTHROPIC
            else None
        )
        self.complete = False
        self.error: str | None = None

    def feed(self, data: bytes) -> list[pb.ChatChunk]:
        chunks: list[pb.ChatChunk] = []
        for event in self._decoder.feed(data):
            kind = classify_event(self._dialect, event)
            if kind is EventKind.ERROR:
                self.error = stream_error(self._dialect, event).message
                continue
            if kind is EventKind.MALFORMED:
                continue  # the relay forwards nothing it could not read; never expected here
            if kind is EventKind.DONE:
                self.complete = True
            if self._anthropic is None:
                if kind is not EventKind.DONE:
                    chunks.extend(openai_chunks(orjson.loads(event.data)))
                continue
            try:
                frames = self._anthropic.feed(event)
            except TranslationError:
                continue
            chunks.extend(self._from_frames(frames))
        return chunks

    @staticmethod
    def _from_frames(frames: list[bytes]) -> list[pb.ChatChunk]:
        chunks: list[pb.ChatChunk] = []
        for frame in frames:  # `data: <json>\n\n`, one event each (dialects/frames.py)
            data = frame.removeprefix(b"data: ").rstrip(b"\n")
            if data != b"[DONE]" and not frame.startswith(b"event:"):
                chunks.extend(openai_chunks(orjson.loads(data)))
        return chunks


def openai_chunks(chunk: Any) -> list[pb.ChatChunk]:
    """One OpenAI chat.completion.chunk → ChatChunks: its text, each tool-call piece, its finish
    reason and its usage, in that order, one ChatChunk each."""
    if not isinstance(chunk, dict):
        return []
    out: list[pb.ChatChunk] = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            out.append(pb.ChatChunk(text_delta=text))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            piece = pb.ToolCall(
                id=call.get("id") or "",
                name=function.get("name") or "",
                arguments_json=function.get("arguments") or "",
                index=int(call.get("index") or 0),
            )
            out.append(pb.ChatChunk(tool_call_delta=piece))
        if choice.get("finish_reason"):
            out.append(pb.ChatChunk(finish_reason=str(choice["finish_reason"])))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        out.append(pb.ChatChunk(usage=_usage(usage)))
    return out
