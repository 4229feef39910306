"""Dialects: what the OpenAI and Anthropic wire formats mean, as pure functions.

Nothing here does I/O; the router calls these with data. One concern per module:

- each wire format as it is: `inbound` (parse a request body), `errors` (render Detour's own errors),
  `sse` (SSE framing), `stream_events` (what an upstream event means for failover),
  `continuation` (the pieces that resume a cut stream);
- per candidate: `exchange_plan` (pass the body through, or translate it and the answer back);
- translation, named by the direction the data goes: `openai_to_anthropic_request` (where an
  OpenAI request becomes an Anthropic one) and `anthropic_to_openai_request`,
  `anthropic_to_openai_response` and `openai_to_anthropic_response`, `anthropic_to_openai_stream`
  and `openai_to_anthropic_stream`, with `upstream_errors` for a provider's error bodies both ways;
- shared by the translators: `content` (tool calls), `answer_metadata` (ids, finish and stop
  reasons, usage), `frames` (each dialect's stream frames), `json_out` (writing again JSON that was
  read, which may be nested deeper than orjson writes).

Each translation module's docstring holds its rules as a table.
"""

from sidecar.config.models import ProviderType as Dialect

__all__ = ["Dialect"]
