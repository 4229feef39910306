"""The shared state's pure rules (sidecar/shared/merge.py, docs/scale-out.md "Consistency"): keys,
the wire format (limits, circuits, budgets), which record wins, epoch ⇄ monotonic, and the reconnect
backoff."""

from __future__ import annotations

import random

import orjson
import pytest

from sidecar.providers.ratelimit_headers import MAX_WAIT_S, WaitSource
from sidecar.routing.budgets import UNDATED_BUDGET_S, Budget
from sidecar.routing.events import RateLimited
from sidecar.routing.limits import LimitEntry, LimitKey, LimitReason, RateLimitTable
from sidecar.shared import merge
from sidecar.shared.merge import SharedBudget, SharedCircuit, SharedLimit

WALL, MONO = 1_750_000_000.0, 5_000.0


def limit(
    until: float = WALL + 30, *, model: str = "gpt-4o", reason: LimitReason = LimitReason.RATE_LIMIT
) -> SharedLimit:
    return SharedLimit("openai", model, until, 30.0, WaitSource.RETRY_AFTER, reason, "peer-a")


def circuit(until: float = WALL + 30, *, model: str = "gpt-4o") -> SharedCircuit:
    return SharedCircuit("openai", model, until, "peer-a")


def budget(seen: float = WALL, **fields: object) -> SharedBudget:
    values: dict[str, object] = {
        "requests": 3,
        "requests_until": WALL + 2,
        "tokens": None,
        "tokens_until": None,
    }
    values.update(fields)
    return SharedBudget("openai", "gpt-4o", seen=seen, origin="peer-a", **values)  # type: ignore[arg-type]


def test_keys_name_the_provider_and_model_and_nothing_else() -> None:
    assert merge.limit_key("detour:", "openai", "gpt-4o") == "detour:limit:openai:gpt-4o"
    assert merge.limit_key("detour:", "openai", None) == "detour:limit:openai:*"
    assert merge.budget_key("detour:", "openai", "gpt-4o") == "detour:budget:openai:gpt-4o"
    # Any name makes one unambiguous key: a ':' or a '*' in a model cannot forge another key.
    assert merge.limit_key("d:", "a:b", "*") == "d:limit:a%3Ab:%2A"
    assert merge.key_of("d:", limit(reason=LimitReason.QUOTA)) == "d:limit:openai:*"
    assert merge.key_of("d:", budget()) == "d:budget:openai:gpt-4o"
    assert merge.key_of("d:", circuit()) == "d:circuit:openai:gpt-4o"
    assert merge.circuit_key("d:", "a:b", "*") == "d:circuit:a%3Ab:%2A"
    assert merge.channel("d:") == "d:events"


def test_a_scan_pattern_escapes_glob_characters_of_the_prefix() -> None:
    assert merge.provider_pattern("a*[x]:", "limit", "p?") == "a\\*\\[x\\]:limit:p%3F:*"


def test_a_record_carries_no_credential() -> None:
    event = RateLimited("openai", "gpt-4o", 30.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT)
    record = merge.limit_from_event(event, WALL, "me")
    assert record is not None
    assert set(orjson.loads(merge.encode(record))) == {
        "kind", "provider", "model", "until", "wait_s", "source", "reason", "origin",
    }  # fmt: skip


@pytest.mark.parametrize(
    "record",
    [limit(), limit(reason=LimitReason.QUOTA), circuit(), budget(), budget(tokens=5, tokens_until=None)],
)
def test_records_round_trip(record: merge.Record) -> None:
    assert merge.decode(merge.encode(record)) == record


@pytest.mark.parametrize(
    "data",
    [
        b"", b"not json", b"[]", b"{}", b'{"kind": "limit"}',
        b'{"kind": "other", "provider": "p", "model": "m", "origin": "o"}',
        b'{"kind": "limit", "provider": "p", "model": "m", "origin": "o", "until": "soon", "wait_s": 1,'
        b' "source": "retry-after", "reason": "rate_limit"}',
        b'{"kind": "limit", "provider": "p", "model": "m", "origin": "o", "until": 1, "wait_s": 1,'
        b' "source": "a-guess", "reason": "rate_limit"}',
        b'{"kind": "limit", "provider": "p", "model": "m", "origin": "o", "until": -1, "wait_s": 1,'
        b' "source": "retry-after", "reason": "rate_limit"}',
        b'{"kind": "limit", "provider": "", "model": "m", "origin": "o", "until": 1, "wait_s": 1,'
        b' "source": "retry-after", "reason": "rate_limit"}',
        b'{"kind": "circuit", "provider": "p", "model": "m", "origin": "o"}',
        b'{"kind": "circuit", "provider": "p", "model": "m", "origin": "o", "until": "later"}',
        b'{"kind": "circuit", "provider": "p", "model": "m", "origin": "o", "until": -5}',
        b'{"kind": "circuit", "provider": "p", "model": 7, "origin": "o", "until": 5}',
        b'{"kind": "budget", "provider": "p", "model": "m", "origin": "o", "seen": 1}',
        b'{"kind": "budget", "provider": "p", "model": "m", "origin": "o", "seen": 1, "requests": true}',
        b'{"kind": "budget", "provider": "p", "model": "m", "origin": "o", "seen": 1, "requests": -3}',
    ],
)  # fmt: skip
def test_anything_else_decodes_to_nothing(data: bytes) -> None:
    assert merge.decode(data) is None


def test_a_name_longer_than_the_bound_is_no_record() -> None:
    long = limit(model="m" * (merge.MAX_NAME_CHARS + 1))
    assert merge.decode(merge.encode(long)) is None


def test_the_later_time_wins_and_a_tie_keeps_what_is_held() -> None:
    assert merge.later(None, WALL)
    assert merge.later(WALL, WALL + 0.001)
    assert not merge.later(WALL, WALL)
    assert not merge.later(WALL + 10, WALL)


def test_epoch_times_become_this_sidecars_monotonic_times_and_back() -> None:
    local = merge.to_local(WALL + 12.5, WALL, MONO)
    assert local == MONO + 12.5
    assert merge.to_epoch(local, WALL, MONO) == WALL + 12.5


def test_a_retry_now_429_is_not_shared() -> None:
    event = RateLimited("openai", "gpt-4o", 0.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT)
    assert merge.limit_from_event(event, WALL, "me") is None


def test_a_table_entry_is_shared_with_its_absolute_expiry() -> None:
    entry = LimitEntry(MONO + 40, 60.0, WaitSource.QUOTA, LimitReason.QUOTA, 2)
    record = merge.limit_from_entry(LimitKey("openai", None), entry, WALL, MONO, "me")
    assert (record.until, record.model, record.whole_provider) == (WALL + 40, "*", True)


def test_a_peers_limit_is_adopted_only_while_in_force_and_capped_at_48_hours() -> None:
    assert merge.adoptable_until(limit(until=WALL - 1), WALL) is None
    assert merge.adoptable_until(limit(until=WALL), WALL) is None
    assert merge.adoptable_until(limit(until=WALL + 5), WALL) == WALL + 5
    assert merge.adoptable_until(limit(until=WALL + 10 * MAX_WAIT_S), WALL) == WALL + MAX_WAIT_S


def test_an_open_circuit_is_shared_until_it_half_opens_and_carries_no_credential() -> None:
    record = merge.circuit_from_open(("openai", "gpt-4o"), MONO + 25, WALL, MONO, "me")
    assert record == SharedCircuit("openai", "gpt-4o", WALL + 25, "me")
    assert orjson.loads(merge.encode(record)) == {
        "kind": "circuit", "provider": "openai", "model": "gpt-4o", "until": WALL + 25, "origin": "me",
    }  # fmt: skip
    assert merge.compared(record) == ("until", WALL + 25), "the later reopen time wins in Redis"


def test_a_circuit_and_a_limit_of_one_candidate_are_told_apart() -> None:
    as_circuit, as_limit = circuit(), limit()
    assert merge.key_of("d:", as_circuit) != merge.key_of("d:", as_limit)
    assert isinstance(merge.decode(merge.encode(as_circuit)), SharedCircuit)
    assert isinstance(merge.decode(merge.encode(as_limit)), SharedLimit)


def test_a_peers_circuit_is_adopted_only_while_open_and_capped_like_a_limit() -> None:
    assert merge.adoptable_until(circuit(until=WALL), WALL) is None
    assert merge.adoptable_until(circuit(until=WALL + 5), WALL) == WALL + 5
    assert merge.adoptable_until(circuit(until=WALL + 10 * MAX_WAIT_S), WALL) == WALL + MAX_WAIT_S


def test_the_table_keeps_the_longer_expiry_whoever_wrote_last() -> None:
    table, key = RateLimitTable(), LimitKey("openai", "gpt-4o")
    assert table.adopt(key, MONO + 30, 30, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT, MONO)
    assert not table.adopt(key, MONO + 10, 10, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT, MONO)
    assert not table.adopt(key, MONO + 30, 30, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT, MONO)
    assert table.blocked_until("openai", "gpt-4o", MONO) == MONO + 30
    assert table.adopt(key, MONO + 45, 45, WaitSource.BACKOFF, LimitReason.RATE_LIMIT, MONO)
    [(_, entry)] = table.active(MONO)
    assert (entry.expires_at, entry.peer, entry.consecutive) == (MONO + 45, True, 0)
    assert not table.adopt(
        LimitKey("openai", "other"), MONO - 1, 1, WaitSource.BACKOFF, LimitReason.RATE_LIMIT, MONO
    )


def test_a_budget_travels_as_epoch_times_and_comes_back_as_a_peers() -> None:
    local = Budget(3, MONO + 2, 900, MONO + 60, MONO - 0.5)
    shared = merge.budget_to_shared(("openai", "gpt-4o"), local, WALL, MONO, "me")
    assert (shared.requests_until, shared.tokens_until, shared.seen) == (WALL + 2, WALL + 60, WALL - 0.5)
    assert shared.until == WALL + 60
    back = merge.budget_from_shared(shared, WALL, MONO)
    assert back == Budget(3, MONO + 2, 900, MONO + 60, MONO - 0.5, peer=True)


def test_a_budget_from_the_future_is_taken_as_seen_now() -> None:
    back = merge.budget_from_shared(budget(seen=WALL + 100), WALL, MONO)
    assert back.seen_at == MONO


def test_an_undated_budget_lives_for_the_fixed_span() -> None:
    assert budget(requests_until=None).until == WALL + UNDATED_BUDGET_S


def test_reconnecting_backs_off_from_a_tenth_of_a_second_to_two_with_jitter() -> None:
    rng = random.Random(3)
    for failures, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (50, 2.0)):
        for _ in range(20):
            assert ceiling / 2 <= merge.reconnect_delay(failures, rng) <= ceiling
