"""An attempt's attributes are built once per kind of attempt and looked up after that: what is
looked up must be what would have been built, model values stay bounded, and the table stays small."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from sidecar.config.models import ProviderConfig, ProviderType
from sidecar.providers.client import ProviderClient
from sidecar.routing.strategies import Candidate, Role
from sidecar.telemetry import attempt_attributes
from sidecar.telemetry.aggregation import Aggregation
from sidecar.telemetry.attempt_attributes import AttemptAttributes
from sidecar.telemetry.instruments import MAX_MODEL_VALUES, OTHER, Instruments


class NoTransport:
    async def send(self, request: object, timeouts: object) -> object:
        raise AssertionError("no request is sent here")

    async def close(self) -> None:
        pass


def _client(provider_id: str = "primary", base_url: str = "https://api.example.com:8443/v1") -> Any:
    config = ProviderConfig(type=ProviderType.OPENAI, base_url=base_url)
    return ProviderClient(provider_id, config, NoTransport())  # type: ignore[arg-type]


def _instruments() -> Instruments:
    aggregation = Aggregation(InstrumentationScope("t"), Resource.create({}))
    reader = InMemoryMetricReader()
    aggregation.attach(reader)
    provider = MeterProvider(
        metric_readers=[reader], shutdown_on_exit=False, exemplar_filter=AlwaysOffExemplarFilter()
    )
    return Instruments(provider.get_meter("t"), aggregation)


def test_the_span_attributes_are_the_conventions_and_are_built_once() -> None:
    kinds = AttemptAttributes(None)
    client, candidate = _client(), Candidate("primary", "gpt-4o", (Role.ALTERNATIVE, Role.FALLBACK))
    first = kinds.span(client, candidate)
    assert first == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "server.address": "api.example.com",
        "server.port": 8443,
        "detour.provider": "primary",
        "detour.role": "alternative",
    }
    assert kinds.span(client, Candidate("primary", "gpt-4o", (Role.ALTERNATIVE, Role.FALLBACK))) is first
    assert kinds.span(client, Candidate("primary", "gpt-4o", (Role.PRIMARY,)))["detour.role"] == "primary"


def test_metric_attributes_depend_on_the_answer_model_and_the_outcome() -> None:
    kinds = AttemptAttributes(_instruments())
    client, candidate = _client(), Candidate("primary", "gpt-4o", (Role.PRIMARY,))
    plain = kinds.metrics(client, candidate, None, None)
    answered = kinds.metrics(client, candidate, "gpt-4o-2024-08-06", None)
    failed = kinds.metrics(client, candidate, None, "timeout")
    assert "gen_ai.response.model" not in plain.duration.attributes
    assert answered.duration.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert failed.duration.attributes["error.type"] == "timeout"
    common = answered.duration.attributes
    assert answered.input_tokens.attributes == {**common, "gen_ai.token.type": "input"}
    assert answered.output_tokens.attributes == {**common, "gen_ai.token.type": "output"}
    assert answered.duration.key == frozenset(answered.duration.attributes.items())
    assert kinds.metrics(client, candidate, "gpt-4o-2024-08-06", None) is answered
    assert "detour.role" not in answered.duration.attributes  # metrics never carry the role


def test_model_values_stay_bounded_when_looked_up() -> None:
    kinds = AttemptAttributes(_instruments())
    client = _client()
    models = [f"model-{index}" for index in range(MAX_MODEL_VALUES + 5)]
    for _ in range(2):  # built, then looked up: the same answer both times
        candidates = [Candidate("p", model, (Role.PRIMARY,)) for model in models]
        series = [kinds.metrics(client, candidate, None, None) for candidate in candidates]
        seen = [kind.duration.attributes["gen_ai.request.model"] for kind in series]
        assert seen == models[:MAX_MODEL_VALUES] + [OTHER] * 5


def test_the_tables_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attempt_attributes, "KINDS_KEPT", 4)
    kinds = AttemptAttributes(_instruments())
    for index in range(20):
        client = _client(f"p{index}", f"https://p{index}.example.com/v1")
        candidate = Candidate(f"p{index}", "gpt-4o", (Role.PRIMARY,))
        assert kinds.span(client, candidate)["server.address"] == f"p{index}.example.com"
        metrics = kinds.metrics(client, candidate, None, None)
        assert metrics.duration.attributes["detour.provider"] == f"p{index}"
    assert len(kinds._spans) <= 4
    assert len(kinds._metrics) <= 4
