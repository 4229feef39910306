"""The pure parts of proactive routing (sidecar/routing/budgets.py, the remaining-quota parser of
sidecar/providers/ratelimit_headers.py): which budget is low, for how long, and the order it gives."""

from __future__ import annotations

import pytest

from sidecar.config.models import MinRemaining
from sidecar.providers.ratelimit_headers import RemainingBudget, parse_remaining
from sidecar.routing.budgets import (
    UNDATED_BUDGET_S,
    Budget,
    BudgetSink,
    BudgetTable,
    estimate_input_tokens,
    low_until,
    prefer_within_budget,
)
from sidecar.routing.strategies import Candidate, Role
from sidecar.routing.table import Clock

NOW = 100.0
WALL = 1_750_000_000.0


def candidate(provider_id: str) -> Candidate:
    return Candidate(provider_id, "gpt-4o", (Role.PRIMARY,))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "1m30s",
          "x-ratelimit-remaining-tokens": "1200", "x-ratelimit-reset-tokens": "250ms"},
         RemainingBudget(4, 90.0, 1200, 0.25)),
        ({"x-ratelimit-remaining-requests": "4"}, RemainingBudget(4, None, None, None)),
        ({"x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "soon"},
         RemainingBudget(4, None, None, None)),
        ({"anthropic-ratelimit-requests-remaining": "7",
          "anthropic-ratelimit-requests-reset": "2025-06-15T15:06:50Z",
          "anthropic-ratelimit-tokens-remaining": "9000",
          "anthropic-ratelimit-tokens-reset": "2025-06-15T15:07:10Z",
          "anthropic-ratelimit-output-tokens-remaining": "800",
          "anthropic-ratelimit-output-tokens-reset": "2025-06-15T15:07:00Z"},
         RemainingBudget(7, 10.0, 800, 20.0)),
        ({"anthropic-ratelimit-input-tokens-remaining": "50",
          "anthropic-ratelimit-input-tokens-reset": "2025-06-15T15:06:00Z"},
         RemainingBudget(None, None, 50, 0.0)),
        ({}, None),
        ({"x-ratelimit-remaining-requests": "-1"}, None),
        ({"x-ratelimit-remaining-requests": "٣"}, None),
        ({"x-ratelimit-remaining-requests": "9" * 40}, None),
    ],
)  # fmt: skip
def test_the_remaining_budget_is_read_from_both_providers_headers(
    headers: dict[str, str], expected: RemainingBudget | None
) -> None:
    now = 1_750_000_000.0  # 2025-06-15T15:06:40Z
    assert parse_remaining(headers, now=now) == expected


def test_a_budget_is_low_while_under_the_threshold_until_its_reset() -> None:
    requests = MinRemaining(requests=5)
    budget = Budget(4, NOW + 10, None, None, NOW)
    assert low_until(budget, requests, 0, NOW) == NOW + 10
    assert low_until(budget, requests, 0, NOW + 10) is None, "reset: eligible again"
    assert low_until(Budget(5, NOW + 10, None, None, NOW), requests, 0, NOW) is None
    assert low_until(Budget(None, None, 3, NOW + 10, NOW), requests, 0, NOW) is None, "another bucket"


def test_tokens_count_the_requests_estimate() -> None:
    tokens = MinRemaining(tokens=1000)
    budget = Budget(None, None, 1500, NOW + 60, NOW)
    assert low_until(budget, tokens, 499, NOW) is None
    assert low_until(budget, tokens, 501, NOW) == NOW + 60
    assert estimate_input_tokens(b"x" * 4000) == 1000


def test_the_later_reset_counts_when_both_buckets_are_low() -> None:
    both = MinRemaining(requests=5, tokens=100)
    assert low_until(Budget(1, NOW + 5, 10, NOW + 50, NOW), both, 0, NOW) == NOW + 50


def test_a_budget_without_a_reset_is_trusted_for_a_fixed_span() -> None:
    budget = Budget(1, None, None, None, NOW)
    assert low_until(budget, MinRemaining(requests=5), 0, NOW) == NOW + UNDATED_BUDGET_S
    assert low_until(budget, MinRemaining(requests=5), 0, NOW + UNDATED_BUDGET_S) is None


def test_low_candidates_go_last_in_their_order_and_nothing_is_dropped() -> None:
    table = BudgetTable()
    a, b, c, d = (candidate(name) for name in "abcd")
    table.record(("a", "gpt-4o"), Budget(1, NOW + 10, None, None, NOW), NOW)
    table.record(("c", "gpt-4o"), Budget(2, NOW + 10, None, None, NOW), NOW)
    table.record(("d", "gpt-4o"), Budget(50, NOW + 10, None, None, NOW), NOW)
    ordered = prefer_within_budget([a, b, c, d], table, MinRemaining(requests=5), 0, NOW)
    assert ordered == [b, d, a, c]


def test_nothing_low_returns_the_same_list() -> None:
    table = BudgetTable()
    candidates = [candidate("a")]
    assert prefer_within_budget(candidates, table, MinRemaining(requests=5), 0, NOW) is candidates
    table.record(("a", "gpt-4o"), Budget(50, NOW + 10, None, None, NOW), NOW)
    assert prefer_within_budget(candidates, table, MinRemaining(requests=5), 0, NOW) is candidates


def test_the_newer_sighting_wins_and_only_this_sidecars_own_are_heard() -> None:
    table, heard = BudgetTable(), []
    table.listener = lambda key, budget: heard.append(budget)
    key = ("a", "gpt-4o")
    assert table.record(key, Budget(5, None, None, None, NOW), NOW)
    assert not table.record(key, Budget(9, None, None, None, NOW - 1, peer=True), NOW)
    assert table.record(key, Budget(3, None, None, None, NOW + 1, peer=True), NOW)
    assert table.get(key) == Budget(3, None, None, None, NOW + 1, peer=True)
    assert heard == [Budget(5, None, None, None, NOW)]


def test_the_table_is_bounded() -> None:
    table = BudgetTable(capacity=10)
    for index in range(25):
        table.record((f"p{index}", "m"), Budget(1, NOW + 100, None, None, NOW + index), NOW)
    assert len(table) == 10
    assert table.evictions == 15
    assert table.get(("p24", "m")) is not None, "the newest is always kept"
    table.keep_only({"p24"})
    assert len(table) == 1


def test_the_sink_records_what_an_answer_says_on_the_routers_clock() -> None:
    table = BudgetTable()
    sink = BudgetSink(table, Clock(monotonic=lambda: NOW, wall=lambda: WALL))
    sink.note(candidate("a"), {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"})
    sink.note(candidate("b"), {"content-type": "application/json"})
    assert table.get(("a", "gpt-4o")) == Budget(3, NOW + 2, None, None, NOW)
    assert table.get(("b", "gpt-4o")) is None
