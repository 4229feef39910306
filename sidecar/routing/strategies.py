"""Which candidates a rule offers for a request, in order (docs/architecture.md §2, §3).

`plan` is pure but for the rotation counters of the round-robin strategies, which live in a
`Rotations` object the router owns (so they survive config reloads while the provider list is the
same). Skipping limited or open-circuit candidates is the attempt loop's job, not the strategy's:
the plan is the full preference order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sidecar.config.models import (
    LimitsAlternativeStrategy,
    ProviderConfig,
    RoundRobinStrategy,
    Rule,
    WeightedRoundRobinStrategy,
)


class Role(StrEnum):
    PRIMARY = "primary"
    ALTERNATIVE = "alternative"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class Candidate:
    provider_id: str
    model: str  # the upstream model this provider is asked for
    # Every role the rule gives it, in the order given: a provider listed as an alternative and as a
    # fallback is tried once, in its first place, and may still answer after a context overflow.
    roles: tuple[Role, ...]

    @property
    def role(self) -> Role:
        """The role it is tried in (its first), as telemetry shows it."""
        return self.roles[0]

    @property
    def is_fallback(self) -> bool:
        return Role.FALLBACK in self.roles


class Rotations:
    """Round-robin cursors and smooth weighted-round-robin weights, keyed by rule and providers."""

    def __init__(self) -> None:
        self._cursors: dict[tuple[str, tuple[str, ...]], int] = {}
        self._weights: dict[tuple[str, tuple[str, ...]], list[int]] = {}

    def next_index(self, rule_name: str, providers: tuple[str, ...]) -> int:
        key = (rule_name, providers)
        index = self._cursors.get(key, 0)
        self._cursors[key] = (index + 1) % len(providers)
        return index

    def next_weighted(self, rule_name: str, providers: tuple[str, ...], weights: tuple[int, ...]) -> int:
        """Nginx's smooth weighted round-robin: 70/30 interleaves instead of sending 70 in a row."""
        key = (rule_name, providers)
        current = self._weights.setdefault(key, [0] * len(weights))
        total = 0
        best = 0
        for index, weight in enumerate(weights):
            current[index] += weight
            total += weight
            if current[index] > current[best]:
                best = index
        current[best] -= total
        return best


def plan(
    rule: Rule, requested_model: str, providers: Mapping[str, ProviderConfig], rotations: Rotations
) -> list[Candidate]:
    ordered: list[tuple[str, Role]] = []
    strategy = rule.strategy
    if isinstance(strategy, LimitsAlternativeStrategy):
        ordered += [(pid, Role.PRIMARY) for pid in strategy.primary_providers]
        ordered += [(pid, Role.ALTERNATIVE) for pid in strategy.alternative_providers]
    elif isinstance(strategy, RoundRobinStrategy):
        ids = tuple(strategy.providers)
        start = rotations.next_index(rule.name, ids)
        ordered += [(ids[(start + offset) % len(ids)], Role.PRIMARY) for offset in range(len(ids))]
    elif isinstance(strategy, WeightedRoundRobinStrategy):
        ids = tuple(item.id for item in strategy.providers)
        weights = tuple(item.weight for item in strategy.providers)
        chosen = rotations.next_weighted(rule.name, ids, weights)
        rest = sorted((i for i in range(len(ids)) if i != chosen), key=lambda i: -weights[i])
        ordered += [(ids[i], Role.PRIMARY) for i in (chosen, *rest)]
    elif rule.primary is not None:
        ordered.append((rule.primary, Role.PRIMARY))
    ordered += [(pid, Role.FALLBACK) for pid in rule.fallbacks]

    # Each candidate at most once per request, in its first place, keeping every role it was given.
    roles: dict[tuple[str, str], list[Role]] = {}
    for provider_id, role in ordered:
        given = roles.setdefault((provider_id, providers[provider_id].upstream_model(requested_model)), [])
        if role not in given:
            given.append(role)
    return [Candidate(provider_id, model, tuple(given)) for (provider_id, model), given in roles.items()]


def match_rule(rules: list[Rule], model: str) -> Rule | None:
    """Rules arrive sorted by priority (highest first); the first match wins."""
    for rule in rules:
        if rule.matcher.matches(model):
            return rule
    return None
