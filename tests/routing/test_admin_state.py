"""What `/admin/state` shows: config in force, limits and circuits — and never a credential."""

from __future__ import annotations

import orjson
import pytest

from sidecar.config import load_config_text
from sidecar.config.models import CircuitBreakerConfig
from sidecar.providers.client import ProviderClient
from sidecar.providers.http import Timeouts, UpstreamRequest, UpstreamResponse
from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.admin_state import LISTED, describe_state
from sidecar.routing.circuits import CircuitBreakers
from sidecar.routing.limits import LimitDecision, LimitKey, LimitReason, RateLimitTable
from sidecar.routing.table import Clock, RouteTable
from sidecar.routing.tally import Counters

SECRET = "sk-secret-123"
ANTHROPIC_SECRET = "sk-ant-secret-456"
NOW = 500.0
WALL = 1_750_000_000.0

CONFIG = f"""
providers:
  openai-primary:
    type: openai
    api_key: {SECRET}
    headers: {{X-Team: search}}
  anthropic-backup:
    type: anthropic
    api_key: ${{ANTHROPIC_KEY}}
routing:
  rules:
    - name: gpt
      priority: 10
      matcher: {{model_pattern: "^gpt-"}}
      strategy: {{type: limits-alternative, primary_providers: [openai-primary]}}
      fallbacks: [anthropic-backup]
    - name: default
      matcher: {{always: true}}
      primary: anthropic-backup
"""


class UnusedTransport:
    """Satisfies the two-method seam; describing state must never send anything."""

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        raise AssertionError("describe_state must not call a provider")

    async def close(self) -> None:
        raise AssertionError("describe_state must not close a provider")


@pytest.fixture
def table() -> RouteTable:
    loaded = load_config_text(CONFIG, source="test", env={"ANTHROPIC_KEY": ANTHROPIC_SECRET})
    providers = loaded.config.providers
    clients = {pid: ProviderClient(pid, provider, UnusedTransport()) for pid, provider in providers.items()}
    return RouteTable(loaded, loaded.config.rules_by_priority(), providers, clients)


@pytest.fixture
def clock() -> Clock:
    return Clock(monotonic=lambda: NOW, wall=lambda: WALL)


def test_with_no_config_and_an_empty_table_the_state_is_empty(clock: Clock) -> None:
    state = describe_state(None, RateLimitTable(capacity=50), clock)

    assert state == {
        "config": None,
        "rate_limited": [],
        "rate_limited_total": 0,
        "rate_limit_table": {"size": 0, "capacity": 50, "evictions": 0},
        "circuits": [],
        "circuits_total": 0,
        "counters": {},
    }


def test_the_config_in_force_is_named_by_version_source_providers_and_rules(
    table: RouteTable, clock: Clock
) -> None:
    state = describe_state(table, RateLimitTable(), clock)

    assert state["config"] == {
        "version": table.loaded.version,
        "source": "test",
        "providers": ["anthropic-backup", "openai-primary"],
        "rules": ["gpt", "default"],
    }
    assert len(state["config"]["version"]) == 12


def test_active_limits_are_listed_soonest_first_with_times_for_people(
    table: RouteTable, clock: Clock
) -> None:
    limits = RateLimitTable()
    limits.record(
        LimitKey("openai-primary", "gpt-4o"),
        LimitDecision(120.0, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT),
        NOW - 20,
    )
    limits.record(
        LimitKey("anthropic-backup", None), LimitDecision(30.0, WaitSource.QUOTA, LimitReason.QUOTA), NOW
    )
    limits.record(
        LimitKey("openai-primary", "gpt-4o-mini"),
        LimitDecision(10.0, WaitSource.BACKOFF, LimitReason.RATE_LIMIT),
        NOW - 60,
    )

    state = describe_state(table, limits, clock)

    assert state["rate_limited"] == [
        {
            "provider": "anthropic-backup",
            "model": None,
            "reason": "quota",
            "wait_source": "quota",
            "wait_s": 30.0,
            "remaining_s": 30.0,
            "expires_at": WALL + 30,
            "consecutive_429s": 1,
        },
        {
            "provider": "openai-primary",
            "model": "gpt-4o",
            "reason": "rate_limit",
            "wait_source": "retry-after",
            "wait_s": 120.0,
            "remaining_s": 100.0,
            "expires_at": WALL + 100,
            "consecutive_429s": 1,
        },
    ]
    assert state["rate_limit_table"] == {"size": 3, "capacity": 1000, "evictions": 0}


def test_times_are_rounded_to_milliseconds(clock: Clock) -> None:
    limits = RateLimitTable()
    limits.record(
        LimitKey("p", "m"), LimitDecision(1.23456789, WaitSource.RETRY_AFTER_MS, LimitReason.RATE_LIMIT), NOW
    )

    [entry] = describe_state(None, limits, clock)["rate_limited"]

    assert (entry["wait_s"], entry["remaining_s"]) == (1.235, 1.235)


def test_the_state_serialises_to_json(table: RouteTable, clock: Clock) -> None:
    limits = RateLimitTable()
    limits.record(
        LimitKey("openai-primary", None), LimitDecision(5, WaitSource.QUOTA, LimitReason.QUOTA), NOW
    )

    decoded = orjson.loads(orjson.dumps(describe_state(table, limits, clock)))

    assert decoded["rate_limited"][0]["model"] is None


def test_the_state_never_contains_an_api_key(table: RouteTable, clock: Clock) -> None:
    limits = RateLimitTable()
    limits.record(
        LimitKey("openai-primary", "gpt-4o"),
        LimitDecision(60, WaitSource.BACKOFF, LimitReason.RATE_LIMIT),
        NOW,
    )
    assert table.providers["openai-primary"].api_key == SECRET  # the secret really is in the table

    rendered = orjson.dumps(describe_state(table, limits, clock))

    assert SECRET.encode() not in rendered
    assert ANTHROPIC_SECRET.encode() not in rendered
    assert b"sk-" not in rendered
    assert b"Bearer" not in rendered


def test_open_circuits_and_counters_are_shown_with_when_they_may_be_retried(clock: Clock) -> None:
    circuits = CircuitBreakers(
        CircuitBreakerConfig(failure_threshold=1, success_threshold=1, timeout_secs=30)
    )
    circuits.record_failure("primary", "gpt-4o", clock.monotonic())
    counters = Counters(retries=3)

    state = describe_state(None, RateLimitTable(), clock, circuits, counters)

    assert state["circuits"] == [
        {
            "provider": "primary",
            "model": "gpt-4o",
            "state": "open",
            "consecutive_failures": 1,
            "retry_in_s": 30.0,
        }
    ]
    assert state["counters"]["retries"] == 3


# --- bounded whatever the clients send (docs/architecture.md §8) -----------------------------------------


def test_at_most_listed_limits_are_shown_the_soonest_to_expire_first_with_the_total(clock: Clock) -> None:
    limits = RateLimitTable(capacity=1000)
    waits = [(n * 37) % 500 + 1.0 for n in range(500)]  # every wait once, in no particular order
    for n, wait in enumerate(waits):
        limits.record(
            LimitKey("p", f"model-{n}"), LimitDecision(wait, WaitSource.BACKOFF, LimitReason.RATE_LIMIT), NOW
        )
    limits.record(LimitKey("p", "expired"), LimitDecision(1, WaitSource.BACKOFF, LimitReason.RATE_LIMIT), 0)

    state = describe_state(None, limits, clock)

    assert len(state["rate_limited"]) == LISTED == 100
    assert [item["remaining_s"] for item in state["rate_limited"]] == [float(n) for n in range(1, 101)]
    assert state["rate_limited_total"] == 500, "active limits only"
    assert state["rate_limit_table"]["size"] == 501


def test_at_most_listed_circuits_are_shown_open_ones_first_soonest_to_reopen_first(clock: Clock) -> None:
    circuits = CircuitBreakers(CircuitBreakerConfig(failure_threshold=2, timeout_secs=30, table_size=1000))
    for n in range(300):
        circuits.record_failure("p", f"closed-{n}", NOW - 10)
    for n in (3, 1, 2):  # first seen in this order...
        circuits.record_failure("p", f"open-{n}", NOW - 10)
    for n in (1, 2, 3):  # ...opened in this one
        circuits.record_failure("p", f"open-{n}", NOW - 10 + n)

    state = describe_state(None, RateLimitTable(), clock, circuits, Counters())

    listed = state["circuits"]
    assert len(listed) == LISTED
    assert [(c["model"], c["retry_in_s"]) for c in listed[:3]] == [
        ("open-1", 21.0),
        ("open-2", 22.0),
        ("open-3", 23.0),
    ]
    assert [c["state"] for c in listed[3:]] == ["closed"] * (LISTED - 3)
    assert state["circuits_total"] == 303
    assert state["circuit_table"] == {"size": 303, "capacity": 1000, "evictions": 0}
    assert state["counters"]["circuit_evictions"] == 0


def test_circuit_evictions_are_counted_with_the_other_counters(clock: Clock) -> None:
    circuits = CircuitBreakers(CircuitBreakerConfig(table_size=10))
    for n in range(25):
        circuits.record_failure("p", f"model-{n}", NOW)

    state = describe_state(None, RateLimitTable(), clock, circuits, Counters(retries=1))

    assert state["circuit_table"] == {"size": 10, "capacity": 10, "evictions": 15}
    assert state["counters"] == {
        "retries": 1,
        "timeouts": 0,
        "circuit_opens": 0,
        "malformed_events": 0,
        "malformed_answers": 0,
        "circuit_evictions": 15,
    }
