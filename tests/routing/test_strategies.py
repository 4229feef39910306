"""Which candidates a rule offers, in order (docs/architecture.md §2, §3): strategies, model mapping, rule
matching."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.config import load_config_text
from sidecar.config.models import DetourConfig, Rule
from sidecar.routing.strategies import Candidate, Role, Rotations, match_rule, plan

CONFIG = """
providers:
  openai-primary: {type: openai, api_key: sk-a}
  openai-backup: {type: openai, api_key: sk-b}
  openai-mapped:
    type: openai
    api_key: sk-c
    model_map: {gpt-4o: gpt-4o-2024-08-06}
  anthropic-pinned: {type: anthropic, api_key: sk-d, model: claude-sonnet-4-20250514}
  openai-large: {type: openai, api_key: sk-e, model: gpt-4.1}
routing:
  rules:
    - name: limits
      priority: 10
      matcher: {model_pattern: "^gpt-4o$"}
      strategy:
        type: limits-alternative
        primary_providers: [openai-primary, openai-mapped]
        alternative_providers: [openai-backup, anthropic-pinned]
      fallbacks: [openai-large]
    - name: duplicates
      priority: 9
      matcher: {model_pattern: "^dup$"}
      strategy:
        type: limits-alternative
        primary_providers: [openai-primary, openai-primary]
        alternative_providers: [openai-backup, openai-primary]
      fallbacks: [openai-backup, openai-large]
    - name: rr
      priority: 8
      matcher: {model_pattern: "^rr-"}
      strategy: {type: round-robin, providers: [openai-primary, openai-backup, openai-mapped]}
      fallbacks: [openai-large]
    - name: wrr
      priority: 7
      matcher: {model_pattern: "^wrr-"}
      strategy:
        type: weighted-round-robin
        providers:
          - {id: openai-primary, weight: 70}
          - {id: openai-backup, weight: 30}
    - name: wrr511
      priority: 6
      matcher: {model_pattern: "^five-one-one$"}
      strategy:
        type: weighted-round-robin
        providers:
          - {id: openai-primary, weight: 5}
          - {id: openai-backup, weight: 1}
          - {id: openai-mapped, weight: 1}
    - name: single
      priority: 5
      matcher: {model_pattern: "^claude"}
      primary: anthropic-pinned
      fallbacks: [openai-large, anthropic-pinned]
    - name: catch-all
      matcher: {always: true}
      primary: openai-primary
"""


@pytest.fixture(scope="module")
def config() -> DetourConfig:
    return load_config_text(CONFIG, source="test", env={}).config


def rule_named(config: DetourConfig, name: str) -> Rule:
    return next(rule for rule in config.routing.rules if rule.name == name)


def providers_of(candidates: list[Candidate]) -> list[str]:
    return [candidate.provider_id for candidate in candidates]


# --- limits-alternative and primary ---------------------------------------------------------------


def test_limits_alternative_offers_primaries_then_alternatives_then_fallbacks_with_upstream_models(
    config: DetourConfig,
) -> None:
    candidates = plan(rule_named(config, "limits"), "gpt-4o", config.providers, Rotations())

    assert candidates == [
        Candidate("openai-primary", "gpt-4o", (Role.PRIMARY,)),
        Candidate("openai-mapped", "gpt-4o-2024-08-06", (Role.PRIMARY,)),
        Candidate("openai-backup", "gpt-4o", (Role.ALTERNATIVE,)),
        Candidate("anthropic-pinned", "claude-sonnet-4-20250514", (Role.ALTERNATIVE,)),
        Candidate("openai-large", "gpt-4.1", (Role.FALLBACK,)),
    ]


def test_a_model_map_only_renames_the_models_it_lists(config: DetourConfig) -> None:
    candidates = plan(rule_named(config, "limits"), "gpt-4o-mini", config.providers, Rotations())

    assert candidates[1] == Candidate("openai-mapped", "gpt-4o-mini", (Role.PRIMARY,))


def test_limits_alternative_is_the_same_order_on_every_call(config: DetourConfig) -> None:
    rotations = Rotations()
    rule = rule_named(config, "limits")

    first = plan(rule, "gpt-4o", config.providers, rotations)

    assert all(plan(rule, "gpt-4o", config.providers, rotations) == first for _ in range(5))


def test_a_candidate_is_offered_once_in_its_first_place_keeping_every_role_it_was_given(
    config: DetourConfig,
) -> None:
    candidates = plan(rule_named(config, "duplicates"), "dup", config.providers, Rotations())

    assert candidates == [
        Candidate("openai-primary", "dup", (Role.PRIMARY, Role.ALTERNATIVE)),
        Candidate("openai-backup", "dup", (Role.ALTERNATIVE, Role.FALLBACK)),
        Candidate("openai-large", "gpt-4.1", (Role.FALLBACK,)),
    ]
    assert [candidate.role for candidate in candidates] == [Role.PRIMARY, Role.ALTERNATIVE, Role.FALLBACK]
    assert [candidate.is_fallback for candidate in candidates] == [False, True, True]


def test_a_primary_rule_offers_its_provider_then_its_fallbacks_without_repeating_it(
    config: DetourConfig,
) -> None:
    candidates = plan(rule_named(config, "single"), "claude-opus-4", config.providers, Rotations())

    assert candidates == [
        Candidate("anthropic-pinned", "claude-sonnet-4-20250514", (Role.PRIMARY, Role.FALLBACK)),
        Candidate("openai-large", "gpt-4.1", (Role.FALLBACK,)),
    ]


# --- round-robin ---------------------------------------------------------------------------------


def test_round_robin_rotates_its_starting_provider_on_every_call(config: DetourConfig) -> None:
    rotations = Rotations()
    rule = rule_named(config, "rr")

    orders = [providers_of(plan(rule, "rr-x", config.providers, rotations)) for _ in range(4)]

    assert orders == [
        ["openai-primary", "openai-backup", "openai-mapped", "openai-large"],
        ["openai-backup", "openai-mapped", "openai-primary", "openai-large"],
        ["openai-mapped", "openai-primary", "openai-backup", "openai-large"],
        ["openai-primary", "openai-backup", "openai-mapped", "openai-large"],
    ]


def test_round_robin_marks_rotated_providers_primary_and_fallbacks_fallback(config: DetourConfig) -> None:
    candidates = plan(rule_named(config, "rr"), "rr-x", config.providers, Rotations())

    assert [candidate.role for candidate in candidates] == [Role.PRIMARY] * 3 + [Role.FALLBACK]


def test_round_robin_rotations_are_independent_per_rule() -> None:
    rotations = Rotations()
    providers = ("a", "b", "c")

    assert [rotations.next_index("one", providers) for _ in range(2)] == [0, 1]
    assert rotations.next_index("two", providers) == 0
    assert rotations.next_index("one", providers) == 2


def test_a_changed_provider_list_starts_a_fresh_rotation() -> None:
    rotations = Rotations()
    rotations.next_index("rule", ("a", "b", "c"))

    assert rotations.next_index("rule", ("a", "b")) == 0


def test_round_robin_over_one_provider_always_starts_with_it() -> None:
    rotations = Rotations()

    assert {rotations.next_index("rule", ("only",)) for _ in range(5)} == {0}


# --- weighted round-robin ------------------------------------------------------------------------


def weighted_sequence(weights: tuple[int, ...], calls: int) -> str:
    rotations = Rotations()
    names = "abcdefgh"[: len(weights)]
    ids = tuple(names)
    return "".join(names[rotations.next_weighted("rule", ids, weights)] for _ in range(calls))


@pytest.mark.parametrize(
    ("weights", "sequence"),
    [
        ((5, 1, 1), "aabacaa"),  # nginx's documented example
        ((70, 30), "abaaabaaba"),
        ((7, 3), "abaaabaaba"),
        ((1, 1), "abab"),
        ((2, 1), "abaaba"),
        ((1, 2, 3), "cbacbc"),  # a tie goes to the first listed, as in nginx
        ((4,), "aaaa"),
    ],
)
def test_smooth_weighted_round_robin_produces_the_nginx_sequence(
    weights: tuple[int, ...], sequence: str
) -> None:
    assert weighted_sequence(weights, len(sequence)) == sequence


def test_weights_70_30_give_exactly_7_and_3_in_10_calls_never_more_than_3_in_a_row() -> None:
    sequence = weighted_sequence((70, 30), 10)

    assert Counter(sequence) == {"a": 7, "b": 3}
    assert max(len(list(run)) for _, run in itertools.groupby(sequence)) == 3


@given(st.lists(st.integers(1, 20), min_size=1, max_size=5), st.integers(1, 4))
def test_every_full_weighted_cycle_picks_each_provider_exactly_its_weight(
    weights: list[int], cycles: int
) -> None:
    sequence = weighted_sequence(tuple(weights), sum(weights) * cycles)

    counts = Counter(sequence)
    assert [counts["abcdefgh"[i]] for i in range(len(weights))] == [w * cycles for w in weights]


def test_weighted_plan_puts_the_chosen_provider_first_and_the_rest_by_weight(config: DetourConfig) -> None:
    rotations = Rotations()
    rule = rule_named(config, "wrr511")

    orders = [providers_of(plan(rule, "five-one-one", config.providers, rotations)) for _ in range(3)]

    assert orders == [
        ["openai-primary", "openai-backup", "openai-mapped"],
        ["openai-primary", "openai-backup", "openai-mapped"],
        ["openai-backup", "openai-primary", "openai-mapped"],
    ]


def test_weighted_plan_over_ten_calls_leads_with_each_provider_by_its_weight(config: DetourConfig) -> None:
    rotations = Rotations()
    rule = rule_named(config, "wrr")

    leaders = Counter(plan(rule, "wrr-x", config.providers, rotations)[0].provider_id for _ in range(10))

    assert leaders == {"openai-primary": 7, "openai-backup": 3}


# --- match_rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "rule"),
    [
        ("gpt-4o", "limits"),
        ("dup", "duplicates"),
        ("rr-anything", "rr"),
        ("wrr-anything", "wrr"),
        ("five-one-one", "wrr511"),
        ("claude-sonnet-4", "single"),
        ("gpt-4o-mini", "catch-all"),
        ("", "catch-all"),
    ],
)
def test_the_first_matching_rule_in_priority_order_wins(config: DetourConfig, model: str, rule: str) -> None:
    matched = match_rule(config.rules_by_priority(), model)

    assert matched is not None
    assert matched.name == rule


def test_priority_not_file_order_decides_which_rule_matches_first() -> None:
    loaded = load_config_text(
        """
providers:
  p: {type: openai, api_key: sk-p}
routing:
  rules:
    - {name: low, priority: 1, matcher: {always: true}, primary: p}
    - {name: high, priority: 5, matcher: {model_pattern: "^gpt"}, primary: p}
    - {name: tie, priority: 1, matcher: {always: true}, primary: p}
""",
        source="test",
        env={},
    )
    rules = loaded.config.rules_by_priority()

    assert [rule.name for rule in rules] == ["high", "low", "tie"]
    assert match_rule(rules, "gpt-4o").name == "high"  # type: ignore[union-attr]
    assert match_rule(rules, "claude").name == "low"  # type: ignore[union-attr]


def test_no_matching_rule_gives_none() -> None:
    loaded = load_config_text(
        """
providers:
  p: {type: openai, api_key: sk-p}
routing:
  rules:
    - {name: only-gpt, matcher: {model_pattern: "^gpt-"}, primary: p}
""",
        source="test",
        env={},
    )

    assert match_rule(loaded.config.rules_by_priority(), "claude-3") is None
    assert match_rule([], "gpt-4o") is None
