"""Rate-limit arithmetic and state (docs/architecture.md §3 "Recording a limit", "Caps and bounds")."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.providers.ratelimit_headers import MAX_WAIT_S, RateLimitHint, WaitSource
from sidecar.routing.limits import (
    LimitDecision,
    LimitKey,
    LimitReason,
    RateLimitTable,
    backoff_wait,
    decide_limit,
)

T0 = 1_000.0


def limited(wait_s: float, source: WaitSource = WaitSource.RETRY_AFTER) -> LimitDecision:
    return LimitDecision(wait_s, source, LimitReason.RATE_LIMIT)


def quota(wait_s: float) -> LimitDecision:
    return LimitDecision(wait_s, WaitSource.QUOTA, LimitReason.QUOTA)


def hint(wait_s: float, source: WaitSource = WaitSource.RETRY_AFTER) -> RateLimitHint:
    return RateLimitHint(wait_s=wait_s, source=source, capped=False, excessive=False)


# --- backoff_wait --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consecutive", "nominal"),
    [(0, 60), (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920)],
)
@pytest.mark.parametrize("seed", range(20))
def test_backoff_doubles_per_consecutive_429_within_ten_percent_jitter(
    consecutive: int, nominal: float, seed: int
) -> None:
    wait = backoff_wait(60, consecutive, 3600, random.Random(seed))

    assert nominal * 0.9 <= wait <= nominal * 1.1


def test_backoff_jitter_actually_varies_between_draws() -> None:
    rng = random.Random(7)

    waits = {backoff_wait(60, 1, 3600, rng) for _ in range(50)}

    assert len(waits) > 40
    assert min(waits) < 57 < 63 < max(waits)


def test_backoff_is_deterministic_for_a_seeded_random_source() -> None:
    assert backoff_wait(60, 3, 3600, random.Random(42)) == backoff_wait(60, 3, 3600, random.Random(42))


@pytest.mark.parametrize("consecutive", [8, 9, 20, 64, 65, 10_000])
def test_backoff_is_capped_by_max_backoff(consecutive: int) -> None:
    assert backoff_wait(60, consecutive, 3600, random.Random(1)) == 3600


def test_the_cap_applies_after_jitter() -> None:
    # 1920 s nominal, jittered up to 2112 s, cut to a 2000 s cap only when the jitter pushes it over.
    waits = [backoff_wait(60, 6, 2000, random.Random(seed)) for seed in range(200)]

    assert max(waits) == 2000
    assert min(waits) >= 1920 * 0.9


def test_backoff_never_exceeds_the_48_hour_ceiling_even_with_a_larger_cap() -> None:
    assert backoff_wait(60, 40, 10 * MAX_WAIT_S, random.Random(3)) == MAX_WAIT_S


@given(
    base=st.floats(0.1, 600),
    consecutive=st.integers(0, 200),
    cap=st.floats(1, 10 * MAX_WAIT_S),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_always_within_jitter_of_nominal_and_never_above_its_caps(
    base: float, consecutive: int, cap: float, seed: int
) -> None:
    wait = backoff_wait(base, consecutive, cap, random.Random(seed))
    nominal = base * 2.0 ** min(max(consecutive, 1) - 1, 64)

    assert 0 < wait <= min(cap, MAX_WAIT_S)
    assert wait >= min(nominal * 0.9, cap, MAX_WAIT_S) * (1 - 1e-12)
    assert wait <= nominal * 1.1 * (1 + 1e-12)


# --- decide_limit --------------------------------------------------------------------------------


def decide(header: RateLimitHint | None, *, is_quota: bool = False, consecutive: int = 1) -> LimitDecision:
    return decide_limit(
        header,
        quota=is_quota,
        consecutive=consecutive,
        backoff_base_s=60,
        max_backoff_s=3600,
        rng=random.Random(0),
    )


@pytest.mark.parametrize(
    "source", [WaitSource.RETRY_AFTER, WaitSource.RETRY_AFTER_MS, WaitSource.RESET_HEADER]
)
def test_a_provider_given_wait_wins_over_backoff(source: WaitSource) -> None:
    assert decide(hint(7.5, source), consecutive=5) == LimitDecision(7.5, source, LimitReason.RATE_LIMIT)


def test_a_zero_wait_from_the_provider_is_kept_as_zero() -> None:
    assert decide(hint(0.0)) == LimitDecision(0.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT)


def test_without_headers_the_wait_is_exponential_backoff() -> None:
    first, third = decide(None, consecutive=1), decide(None, consecutive=3)

    assert (first.source, first.reason) == (WaitSource.BACKOFF, LimitReason.RATE_LIMIT)
    assert 54 <= first.wait_s <= 66
    assert 216 <= third.wait_s <= 264


def test_a_quota_429_with_a_header_uses_the_header_wait_with_reason_quota() -> None:
    assert decide(hint(30.0), is_quota=True) == LimitDecision(30.0, WaitSource.QUOTA, LimitReason.QUOTA)


def test_a_quota_429_without_headers_waits_the_longest_backoff_the_rule_allows() -> None:
    assert decide(None, is_quota=True) == LimitDecision(3600, WaitSource.QUOTA, LimitReason.QUOTA)


def test_a_quota_wait_without_headers_is_still_bounded_by_48_hours() -> None:
    decision = decide_limit(
        None, quota=True, consecutive=1, backoff_base_s=60, max_backoff_s=1e9, rng=random.Random(0)
    )

    assert decision.wait_s == MAX_WAIT_S


# --- RateLimitTable: which candidates are blocked ------------------------------------------------


def test_an_empty_table_blocks_nothing() -> None:
    table = RateLimitTable()

    assert table.blocked_until("openai", "gpt-4o", T0) is None
    assert soonest_expiry(table, T0) is None
    assert list(table.active(T0)) == []
    assert len(table) == 0


def test_a_recorded_limit_blocks_its_candidate_until_it_expires() -> None:
    table = RateLimitTable()
    table.record(LimitKey("openai", "gpt-4o"), limited(30), T0)

    assert table.blocked_until("openai", "gpt-4o", T0) == T0 + 30
    assert table.blocked_until("openai", "gpt-4o", T0 + 29.9) == T0 + 30
    assert table.blocked_until("openai", "gpt-4o", T0 + 30) is None


def test_a_429_for_one_model_does_not_block_another_model_of_the_same_provider() -> None:
    table = RateLimitTable()
    table.record(LimitKey("openai", "gpt-4o"), limited(30), T0)

    assert table.blocked_until("openai", "gpt-4o-mini", T0) is None


def test_a_429_on_one_provider_does_not_block_the_same_model_on_another_provider() -> None:
    table = RateLimitTable()
    table.record(LimitKey("openai-primary", "gpt-4o"), limited(30), T0)

    assert table.blocked_until("openai-backup", "gpt-4o", T0) is None


def test_an_exhausted_quota_blocks_every_model_of_the_provider() -> None:
    table = RateLimitTable()
    table.record(LimitKey("openai", None), quota(3600), T0)

    for model in ("gpt-4o", "gpt-4o-mini", "o3"):
        assert table.blocked_until("openai", model, T0) == T0 + 3600
    assert table.blocked_until("other", "gpt-4o", T0) is None


def test_a_candidate_under_both_a_model_limit_and_a_quota_is_blocked_until_the_later_one() -> None:
    table = RateLimitTable()
    table.record(LimitKey("openai", "gpt-4o"), limited(100), T0)
    table.record(LimitKey("openai", None), quota(40), T0)

    assert table.blocked_until("openai", "gpt-4o", T0) == T0 + 100
    assert table.blocked_until("openai", "gpt-4o", T0 + 100) is None
    assert table.blocked_until("openai", "gpt-4o-mini", T0) == T0 + 40


@pytest.mark.parametrize("wait_s", [0.0, -1.0])
def test_a_zero_wait_is_not_recorded(wait_s: float) -> None:
    table = RateLimitTable()

    assert table.record(LimitKey("openai", "gpt-4o"), limited(wait_s), T0) is None
    assert len(table) == 0
    assert table.blocked_until("openai", "gpt-4o", T0) is None


def test_record_returns_the_entry_in_force() -> None:
    entry = RateLimitTable().record(LimitKey("openai", "gpt-4o"), limited(30, WaitSource.RESET_HEADER), T0)

    assert entry is not None
    assert (entry.expires_at, entry.wait_s, entry.source, entry.reason, entry.consecutive) == (
        T0 + 30,
        30,
        WaitSource.RESET_HEADER,
        LimitReason.RATE_LIMIT,
        1,
    )


# --- RateLimitTable: the consecutive-429 counter -------------------------------------------------


def test_the_consecutive_counter_escalates_only_after_the_previous_limit_expired() -> None:
    table = RateLimitTable()
    key = LimitKey("openai", "gpt-4o")

    counts = []
    now = T0
    for _ in range(4):
        entry = table.record(key, limited(10), now)
        assert entry is not None
        counts.append(entry.consecutive)
        now = entry.expires_at + 1

    assert counts == [1, 2, 3, 4]


def test_consecutive_after_this_counts_the_429_a_new_limit_would_make() -> None:
    table = RateLimitTable()
    key = LimitKey("openai", "gpt-4o")

    assert table.consecutive_after_this(key, T0) == 1
    table.record(key, limited(10), T0)
    assert table.consecutive_after_this(key, T0 + 5) == 1
    assert table.consecutive_after_this(key, T0 + 10) == 2


def test_a_success_resets_the_consecutive_counter() -> None:
    table = RateLimitTable()
    key = LimitKey("openai", "gpt-4o")
    table.record(key, limited(10), T0)
    table.record(key, limited(10), T0 + 20)

    table.record_success("openai", "gpt-4o")

    assert len(table) == 0
    entry = table.record(key, limited(10), T0 + 40)
    assert entry is not None
    assert entry.consecutive == 1


def test_a_success_on_an_empty_table_or_another_model_is_harmless() -> None:
    table = RateLimitTable()
    table.record_success("openai", "gpt-4o")
    table.record(LimitKey("openai", "gpt-4o"), limited(10), T0)

    table.record_success("openai", "gpt-4o-mini")

    assert table.blocked_until("openai", "gpt-4o", T0) == T0 + 10


def test_a_success_does_not_lift_a_provider_wide_quota() -> None:
    table = RateLimitTable()
    table.record(LimitKey("openai", None), quota(60), T0)

    table.record_success("openai", "gpt-4o")

    assert table.blocked_until("openai", "gpt-4o", T0) == T0 + 60


def test_a_concurrent_burst_of_429s_does_not_escalate_and_keeps_the_longest_expiry() -> None:
    table = RateLimitTable()
    key = LimitKey("openai", "gpt-4o")

    entries = [
        table.record(key, limited(60, WaitSource.BACKOFF), T0),
        table.record(key, limited(20, WaitSource.RETRY_AFTER), T0 + 1),
        table.record(key, limited(90, WaitSource.RESET_HEADER), T0 + 2),
        table.record(key, limited(5, WaitSource.RETRY_AFTER_MS), T0 + 3),
    ]

    assert all(entry is not None and entry.consecutive == 1 for entry in entries)
    assert len(table) == 1
    assert table.blocked_until("openai", "gpt-4o", T0 + 3) == T0 + 92
    [(_, entry)] = list(table.active(T0 + 3))
    assert (entry.wait_s, entry.source) == (90, WaitSource.RESET_HEADER)


def test_a_zero_wait_during_a_limit_leaves_the_limit_in_force() -> None:
    table = RateLimitTable()
    key = LimitKey("openai", "gpt-4o")
    table.record(key, limited(60), T0)

    assert table.record(key, limited(0), T0 + 1) is None
    assert table.blocked_until("openai", "gpt-4o", T0 + 1) == T0 + 60


# --- RateLimitTable: the bound -------------------------------------------------------------------


def test_the_table_never_grows_past_its_capacity_and_always_records_the_newest() -> None:
    table = RateLimitTable(capacity=1000)

    for i in range(5000):
        now = T0 + i  # nothing expires: every limit outlives the run
        entry = table.record(LimitKey("p", f"m{i}"), limited(10_000), now)
        assert entry is not None
        assert len(table) <= 1000
        assert table.blocked_until("p", f"m{i}", now) == now + 10_000

    assert len(table) == 1000
    assert table.evictions == 4000


def test_when_full_the_entry_that_expires_soonest_gives_way() -> None:
    table = RateLimitTable(capacity=10)
    for i in range(10):
        table.record(LimitKey("p", f"m{i}"), limited(100 + (i * 7) % 10), T0)
    soonest = min(table.active(T0), key=lambda item: item[1].expires_at)[0]

    table.record(LimitKey("p", "new"), limited(1), T0)

    assert soonest not in dict(table.active(T0))
    assert table.blocked_until("p", "new", T0) == T0 + 1
    assert (len(table), table.evictions) == (10, 1)


def test_at_ninety_percent_expired_entries_are_purged_before_anything_is_evicted() -> None:
    table = RateLimitTable(capacity=1000)
    for i in range(900):
        table.record(LimitKey("p", f"old{i}"), limited(10), T0)
    table.record(LimitKey("p", "live"), limited(1000), T0)
    assert len(table) == 901

    table.record(LimitKey("p", "new"), limited(10), T0 + 20)

    assert len(table) == 2
    assert table.evictions == 0


def test_below_ninety_percent_expired_entries_are_kept_for_their_counters() -> None:
    table = RateLimitTable(capacity=1000)
    for i in range(899):
        table.record(LimitKey("p", f"old{i}"), limited(10), T0)

    table.record(LimitKey("p", "new"), limited(10), T0 + 20)

    assert len(table) == 900
    assert table.consecutive_after_this(LimitKey("p", "old0"), T0 + 20) == 2


def test_renewing_an_existing_key_in_a_full_table_evicts_nothing() -> None:
    table = RateLimitTable(capacity=3)
    for i in range(3):
        table.record(LimitKey("p", f"m{i}"), limited(10), T0)

    table.record(LimitKey("p", "m0"), limited(10), T0 + 50)

    assert (len(table), table.evictions) == (3, 0)


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.just(0.0) | st.floats(0.01, 100), st.floats(0, 5)),
        max_size=200,
    )
)
def test_any_sequence_of_limits_keeps_a_small_table_within_its_bound(
    steps: list[tuple[int, float, float]],
) -> None:
    table = RateLimitTable(capacity=10)
    now = T0
    for model, wait, advance in steps:
        now += advance
        entry = table.record(LimitKey("p", f"m{model}"), limited(wait), now)
        assert len(table) <= 10
        if wait > 0:
            assert entry is not None
            assert table.blocked_until("p", f"m{model}", now) is not None


# --- RateLimitTable: maintenance -----------------------------------------------------------------


def filled_table() -> RateLimitTable:
    table = RateLimitTable()
    table.record(LimitKey("openai", "gpt-4o"), limited(30), T0)
    table.record(LimitKey("openai", "gpt-4o-mini"), limited(60), T0)
    table.record(LimitKey("openai", None), quota(90), T0)
    table.record(LimitKey("anthropic", "claude-sonnet-4"), limited(10), T0)
    return table


def test_keep_only_forgets_providers_that_no_longer_exist() -> None:
    table = filled_table()

    table.keep_only({"anthropic", "gone-anyway"})

    assert [key for key, _ in table.active(T0)] == [LimitKey("anthropic", "claude-sonnet-4")]


def test_keep_only_with_every_provider_keeps_everything() -> None:
    table = filled_table()

    table.keep_only({"openai", "anthropic"})

    assert len(table) == 4


def test_clearing_a_provider_forgets_all_its_models_and_its_quota() -> None:
    table = filled_table()

    assert table.clear("openai") == 3
    assert {key.provider_id for key, _ in table.active(T0)} == {"anthropic"}


def test_clearing_one_candidate_forgets_only_that_model() -> None:
    table = filled_table()

    assert table.clear("openai", "gpt-4o") == 1
    assert table.blocked_until("openai", "gpt-4o", T0) == T0 + 90  # the quota still holds
    assert len(table) == 3


def test_clearing_something_unknown_removes_nothing() -> None:
    table = filled_table()

    assert table.clear("nobody") == 0
    assert table.clear("openai", "o3") == 0
    assert len(table) == 4


def test_active_lists_only_unexpired_entries() -> None:
    table = filled_table()

    assert {key for key, _ in table.active(T0 + 45)} == {
        LimitKey("openai", "gpt-4o-mini"),
        LimitKey("openai", None),
    }
    assert list(table.active(T0 + 90)) == []


def soonest_expiry(table: RateLimitTable, now: float) -> float | None:
    expiries = [entry.expires_at for _, entry in table.active(now)]
    return min(expiries) if expiries else None


def test_active_limits_give_the_earliest_unexpired_expiry() -> None:
    table = filled_table()

    assert soonest_expiry(table, T0) == T0 + 10
    assert soonest_expiry(table, T0 + 10) == T0 + 30
    assert soonest_expiry(table, T0 + 200) is None
