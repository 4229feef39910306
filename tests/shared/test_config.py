"""The `state` section and the `min_remaining` strategy option (docs/configuration.md,
docs/scale-out.md): defaults, problems named by path like the rest of the config, and a Redis URL
that is never quoted — it may hold a password."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.config.loader import load_config_text
from sidecar.config.models import StateBackend
from sidecar.errors import ConfigError

SECRET = "hunter2-secret"


def document(state: dict[str, Any] | None = None, **strategy: Any) -> str:
    rule = {
        "name": "r",
        "matcher": {"always": True},
        "strategy": {"type": "limits-alternative", "primary_providers": ["a"], **strategy},
    }
    data: dict[str, Any] = {"providers": {"a": {"type": "openai"}}, "routing": {"rules": [rule]}}
    if state is not None:
        data["state"] = state
    return yaml.safe_dump(data)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config_text(text, source="test", env=env or {})
    return [f"{problem.path}: {problem.message}" for problem in raised.value.problems]


def test_the_default_is_memory_and_off() -> None:
    loaded = load_config_text(document(), source="test", env={})
    state = loaded.config.state
    assert (state.backend, state.url, state.key_prefix, state.timeout_ms) == (
        StateBackend.MEMORY,
        None,
        "detour:",
        50,
    )
    assert loaded.config.routing.rules[0].min_remaining is None


def test_a_redis_state_and_a_threshold_load() -> None:
    text = document(
        {"backend": "redis", "url": "$REDIS_URL", "timeout_ms": 80}, min_remaining={"requests": 3}
    )
    loaded = load_config_text(text, source="test", env={"REDIS_URL": f"redis://:{SECRET}@redis:6379/0"})
    assert loaded.config.state.url == f"redis://:{SECRET}@redis:6379/0"
    assert SECRET not in repr(loaded.config)
    threshold = loaded.config.routing.rules[0].min_remaining
    assert threshold is not None
    assert (threshold.requests, threshold.tokens) == (3, None)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"backend": "redis"}, "state.url: required with backend 'redis'"),
        ({"backend": "redis", "url": f"http://user:{SECRET}@x"},
         "state.url: must start with redis://, rediss:// or unix:// (value not shown)"),
        ({"backend": "rediss"}, "state.backend: must be 'memory' or 'redis'"),
        ({"backend": "redis", "url": "redis://x", "key_prefx": "a"},
         "state.key_prefx: unknown key 'key_prefx' (did you mean 'key_prefix'?)"),
        ({"key_prefix": "has space"},
         "state.key_prefix: may hold only letters, digits and : _ . { } / - (value not shown)"),
        ({"timeout_ms": 0}, "state.timeout_ms: must be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_state_problems_are_named_by_their_path(state: dict[str, Any], expected: str) -> None:
    found = problems(document(state))
    assert found == [expected]
    assert SECRET not in " ".join(found)


def test_an_expanded_url_is_scrubbed_from_every_message() -> None:
    env = {"REDIS_URL": f"http://{SECRET}@x"}
    found = problems(document({"backend": "redis", "url": "$REDIS_URL"}), env)
    assert found == ["state.url: must start with redis://, rediss:// or unix:// (value not shown)"]


def test_a_url_with_the_memory_backend_is_ignored_with_a_warning() -> None:
    loaded = load_config_text(document({"url": "redis://x"}), source="test", env={})
    assert "state.url is ignored: the state backend is 'memory'" in loaded.warnings


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        ({}, "routing.rules[0].strategy.min_remaining: needs 'requests', 'tokens' or both"),
        (
            {"requests": 0},
            "routing.rules[0].strategy.min_remaining.requests: must be greater than or equal to 1",
        ),
        (
            {"token": 5},
            "routing.rules[0].strategy.min_remaining.token: unknown key 'token' (did you mean 'tokens'?)",
        ),
    ],
)
def test_min_remaining_problems_are_named_by_their_path(threshold: dict[str, Any], expected: str) -> None:
    assert problems(document(min_remaining=threshold)) == [expected]


@pytest.mark.parametrize("strategy", ["round-robin", "weighted-round-robin"])
def test_every_strategy_takes_min_remaining(strategy: str) -> None:
    providers: list[Any] = ["a"] if strategy == "round-robin" else [{"id": "a", "weight": 1}]
    data = yaml.safe_load(document())
    data["routing"]["rules"][0]["strategy"] = {
        "type": strategy,
        "providers": providers,
        "min_remaining": {"tokens": 9},
    }
    loaded = load_config_text(yaml.safe_dump(data), source="test", env={})
    threshold = loaded.config.routing.rules[0].min_remaining
    assert threshold is not None
    assert threshold.tokens == 9
