"""An upstream attempt's span and metric attributes, built once per kind of attempt.

Every attempt to the same provider, for the same model, with the same answer model and outcome has
the same attributes on its metrics and the same first attributes on its span — and there are few
such kinds (one per provider, model and outcome). Building them, and hashing each metric attribute set,
for every attempt was a third of what metrics cost the event loop (docs/benchmarks.md, "Telemetry
on"); here they are built on a kind's first attempt and looked up after that.

What an attempt records is unchanged: the same attributes in the same order, the model values
bounded by the same `BoundedValues` (which answer a value the same way every time they are asked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sidecar.dialects import Dialect
from sidecar.telemetry.aggregation import Series

if TYPE_CHECKING:
    from sidecar.providers.client import ProviderClient
    from sidecar.routing.strategies import Candidate
    from sidecar.telemetry.instruments import Instruments

OPERATION = "chat"  # both /v1/chat/completions and /v1/messages are GenAI "chat" operations
_PROVIDER_NAMES = {Dialect.OPENAI: "openai", Dialect.ANTHROPIC: "anthropic"}
KINDS_KEPT = 1024  # kinds remembered; past that (a reload after another, say) they start over


class AttemptMetrics:
    """The attribute sets of one kind of attempt's measurements, their keys computed."""

    __slots__ = ("duration", "input_tokens", "output_tokens")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.duration = Series(attributes)  # also time to first chunk
        self.input_tokens = Series({**attributes, "gen_ai.token.type": "input"})
        self.output_tokens = Series({**attributes, "gen_ai.token.type": "output"})


class AttemptAttributes:
    """Held by the process-wide tracing hook; used on the event loop's thread only."""

    __slots__ = ("_instruments", "_metrics", "_spans")

    def __init__(self, instruments: Instruments | None) -> None:
        self._instruments = instruments
        self._spans: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._metrics: dict[tuple[Any, ...], AttemptMetrics] = {}

    def span(self, client: ProviderClient, candidate: Candidate) -> dict[str, Any]:
        """The first attributes of the attempt's span (callers copy it before adding to it)."""
        key = (client.dialect, client.address, candidate)
        attributes = self._spans.get(key)
        if attributes is None:
            if len(self._spans) >= KINDS_KEPT:
                self._spans.clear()
            attributes = self._spans[key] = {**base(client, candidate), "detour.role": candidate.role.value}
        return attributes

    def metrics(
        self, client: ProviderClient, candidate: Candidate, response_model: str | None, error_type: str | None
    ) -> AttemptMetrics:
        """Needs the instruments (only called when metrics are on)."""
        key = (client.dialect, client.address, candidate, response_model, error_type)
        kind = self._metrics.get(key)
        if kind is None:
            instruments = self._instruments
            assert instruments is not None
            if len(self._metrics) >= KINDS_KEPT:
                self._metrics.clear()
            attributes = base(client, candidate)
            attributes["gen_ai.request.model"] = instruments.request_model(candidate.model)
            if response_model is not None:
                attributes["gen_ai.response.model"] = instruments.response_model(response_model)
            if error_type is not None:
                attributes["error.type"] = error_type
            kind = self._metrics[key] = AttemptMetrics(attributes)
        return kind


def base(client: ProviderClient, candidate: Candidate) -> dict[str, Any]:
    """The attributes spans and metrics share (GenAI conventions, plus Detour's provider id)."""
    host, port = client.address
    return {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": _PROVIDER_NAMES.get(client.dialect, str(client.dialect)),
        "gen_ai.request.model": candidate.model,
        "server.address": host,
        "server.port": port,
        "detour.provider": candidate.provider_id,  # bounded by the config
    }
