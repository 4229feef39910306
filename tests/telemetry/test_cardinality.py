"""Model names come from clients: a flood of distinct ones must not create unbounded metric series."""

from __future__ import annotations

import asyncio

import httpx
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sidecar.simulate import RateLimit, SimulatedProvider
from sidecar.telemetry.instruments import MAX_MODEL_VALUES, OTHER, BoundedValues
from tests.support.running import config_text, limits_alternative_rule, provider
from tests.telemetry.traced import AUTH, traced_sidecar

FLOOD = MAX_MODEL_VALUES + 30


def test_bounded_values_pass_the_first_hundred_and_fold_the_rest_into_other() -> None:
    bound = BoundedValues(limit=3)
    assert [bound(v) for v in ("a", "b", "a", "c", "d", "b", "e")] == ["a", "b", "a", "c", OTHER, "b", OTHER]


async def test_a_flood_of_client_model_names_keeps_every_model_attribute_bounded() -> None:
    reader = InMemoryMetricReader()
    async with SimulatedProvider("openai", name="gpt") as gpt, SimulatedProvider("openai", name="alt") as alt:
        gpt.script(*[RateLimit(retry_after="60")] * FLOOD)  # every model is limited once: a series each
        text = config_text(
            {"gpt": provider("openai", gpt.base_url), "alt": provider("openai", alt.base_url)},
            [limits_alternative_rule(["gpt"], ["alt"])],
        )
        async with traced_sidecar(text, {}, metric_readers=[reader]) as detour, httpx.AsyncClient() as client:
            models = [f"client-model-{index:03d}" for index in range(FLOOD)]
            responses = await asyncio.gather(
                *(
                    client.post(
                        detour.url + "/v1/chat/completions",
                        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                        headers=AUTH,
                    )
                    for model in models
                )
            )
            data = reader.get_metrics_data()

    assert [response.status_code for response in responses] == [200] * FLOOD
    assert data is not None
    seen: dict[tuple[str, str], set[str]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    for key in ("model", "gen_ai.request.model", "gen_ai.response.model"):
                        if key in point.attributes:
                            seen.setdefault((metric.name, key), set()).add(str(point.attributes[key]))
    assert set(seen) == {
        ("detour.rate_limit.events", "model"),
        ("detour.rate_limit.alternatives_used", "model"),
        ("gen_ai.client.operation.duration", "gen_ai.request.model"),
        ("gen_ai.client.operation.duration", "gen_ai.response.model"),
        ("gen_ai.client.token.usage", "gen_ai.request.model"),
        ("gen_ai.client.token.usage", "gen_ai.response.model"),
    }
    for (metric, key), values in seen.items():
        assert len(values) == MAX_MODEL_VALUES + 1, (metric, key, len(values))
        assert OTHER in values
