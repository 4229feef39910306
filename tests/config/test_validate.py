"""Schema errors as users read them, and the cross-field checks of `check_references`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sidecar.config import DetourConfig, LoadedConfig, check_references, load_config_text
from sidecar.errors import ConfigError, ConfigProblem

from .conftest import minimal_document

Dump = Callable[[dict[str, Any]], str]
Edit = Callable[[dict[str, Any]], None]


def load(document: dict[str, Any], dump: Dump) -> LoadedConfig:
    return load_config_text(dump(document), source="test", env={})


def problems_of(document: dict[str, Any], dump: Dump) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(document, dump)
    return [str(problem) for problem in caught.value.problems]


def rule(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "matcher": {"always": True}, **fields}


def mixed_dialects() -> dict[str, Any]:
    """Two OpenAI and two Anthropic providers, no rules yet."""
    document = minimal_document()
    document["providers"] |= {
        "anthropic-primary": {"type": "anthropic"},
        "anthropic-backup": {"type": "anthropic"},
    }
    return document


# --- provider references --------------------------------------------------------------------------


def test_a_mistyped_provider_id_names_its_path_and_suggests_the_right_one(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"] = [
        rule("one", primary="openai-primary"),
        rule("two", primary="openai-backup"),
        rule(
            "three",
            strategy={"type": "limits-alternative", "primary_providers": ["openai-primary", "openai-bakup"]},
        ),
    ]

    assert problems_of(document, dump) == [
        "routing.rules[2].strategy.primary_providers[1]: "
        "unknown provider 'openai-bakup' (did you mean 'openai-backup'?)"
    ]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"primary": "ghost"}, "routing.rules[0].primary"),
        (
            {"primary": "openai-primary", "fallbacks": ["openai-backup", "ghost"]},
            "routing.rules[0].fallbacks[1]",
        ),
        (
            {"strategy": {"type": "round-robin", "providers": ["ghost"]}},
            "routing.rules[0].strategy.providers[0]",
        ),
        (
            {"strategy": {"type": "weighted-round-robin", "providers": [{"id": "ghost", "weight": 1}]}},
            "routing.rules[0].strategy.providers[0].id",
        ),
        (
            {
                "strategy": {
                    "type": "limits-alternative",
                    "primary_providers": ["openai-primary"],
                    "alternative_providers": ["openai-backup", "ghost"],
                }
            },
            "routing.rules[0].strategy.alternative_providers[1]",
        ),
    ],
)
def test_an_unknown_provider_is_caught_wherever_a_rule_names_one(
    dump: Dump, fields: dict[str, Any], path: str
) -> None:
    document = minimal_document()
    document["routing"]["rules"] = [rule("r", **fields)]

    assert problems_of(document, dump) == [f"{path}: unknown provider 'ghost'"]


# --- rule shape -----------------------------------------------------------------------------------


def test_a_rule_with_both_strategy_and_primary_is_rejected(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"][0]["primary"] = "openai-primary"

    assert problems_of(document, dump) == [
        "routing.rules[0]: has both 'strategy' and 'primary'; use exactly one"
    ]


def test_a_rule_with_neither_strategy_nor_primary_is_rejected(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"] = [rule("r", fallbacks=["openai-primary"])]

    assert problems_of(document, dump) == ["routing.rules[0]: needs either 'strategy' or 'primary'"]


@pytest.mark.parametrize("matcher", [{}, {"always": False}, {"always": None}])
def test_a_matcher_needs_always_or_a_model_pattern(dump: Dump, matcher: dict[str, Any]) -> None:
    document = minimal_document()
    document["routing"]["rules"].append({"name": "other", "matcher": matcher, "primary": "openai-primary"})

    assert problems_of(document, dump) == [
        "routing.rules[1].matcher: needs 'always: true' or a 'model_pattern'"
    ]


def test_duplicate_rule_names_are_rejected(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"] += [
        rule("gpt", primary="openai-primary"),
        rule("default", primary="openai-backup"),
    ]

    assert problems_of(document, dump) == [
        "routing.rules[2].name: duplicate rule name 'default' (see routing.rules[0])"
    ]


def test_every_cross_field_problem_is_reported_at_once(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"] = [
        {"name": "a", "matcher": {}, "primary": "ghost"},
        rule(
            "a", strategy={"type": "round-robin", "providers": ["openai-primary"]}, primary="openai-primary"
        ),
    ]

    assert problems_of(document, dump) == [
        "routing.rules[0].matcher: needs 'always: true' or a 'model_pattern'",
        "routing.rules[0].primary: unknown provider 'ghost'",
        "routing.rules[1]: has both 'strategy' and 'primary'; use exactly one",
        "routing.rules[1].name: duplicate rule name 'a' (see routing.rules[0])",
    ]


# --- schema errors --------------------------------------------------------------------------------


def _set(*keys: str | int, value: Any) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        node: Any = document
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _set("providers", "openai-primary", "timeout_sec", value=5),
            "providers.openai-primary.timeout_sec: unknown key 'timeout_sec' (did you mean 'timeout_secs'?)",
        ),
        (_set("provider", value={}), "provider: unknown key 'provider' (did you mean 'providers'?)"),
        (
            _set("routing", "rules", 0, "fallback", value=[]),
            "routing.rules[0].fallback: unknown key 'fallback' (did you mean 'fallbacks'?)",
        ),
        (
            _set("routing", "circuit_breaker", value={"failure_treshold": 3}),
            "routing.circuit_breaker.failure_treshold: unknown key 'failure_treshold' "
            "(did you mean 'failure_threshold'?)",
        ),
        (_set("server", value={"bind": "0.0.0.0"}), "server.bind: unknown key 'bind'"),
        (
            _set("routing", "rules", 0, "matcher", "alwayz", value=True),
            "routing.rules[0].matcher.alwayz: unknown key 'alwayz' (did you mean 'always'?)",
        ),
    ],
)
def test_an_unknown_key_is_an_error_with_a_suggestion_when_one_is_close(
    dump: Dump, edit: Edit, expected: str
) -> None:
    document = minimal_document()
    edit(document)

    assert problems_of(document, dump) == [expected]


def test_an_unknown_key_inside_a_strategy_is_named_without_pydantics_union_tag(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"][0]["strategy"] = {
        "type": "limits-alternative",
        "primary_providers": ["openai-primary"],
        "alternative_provider": ["openai-backup"],
    }

    assert problems_of(document, dump) == [
        "routing.rules[0].strategy.alternative_provider: "
        "unknown key 'alternative_provider' (did you mean 'alternative_providers'?)"
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _set("routing", "rules", 0, "matcher", value={"model_pattern": "^gpt-(4"}),
            "routing.rules[0].matcher.model_pattern: invalid regular expression: "
            "missing ), unterminated subpattern at position 5",
        ),
        (
            _set(
                "routing",
                "rules",
                0,
                "strategy",
                value={
                    "type": "weighted-round-robin",
                    "providers": [
                        {"id": "openai-primary", "weight": 3},
                        {"id": "openai-backup", "weight": 0},
                    ],
                },
            ),
            "routing.rules[0].strategy.providers[1].weight: must be greater than 0",
        ),
        (
            _set(
                "routing",
                "rules",
                0,
                "strategy",
                value={"type": "limits-alternative", "primary_providers": []},
            ),
            "routing.rules[0].strategy.primary_providers: must not be empty",
        ),
        (
            _set("routing", "rules", 0, "strategy", value={"type": "round-robin", "providers": []}),
            "routing.rules[0].strategy.providers: must not be empty",
        ),
        (_set("routing", "rules", value=[]), "routing.rules: must not be empty"),
        (_set("providers", value={}), "providers: must not be empty"),
        (
            _set(
                "routing",
                "rules",
                0,
                "strategy",
                value={"type": "round_robin", "providers": ["openai-primary"]},
            ),
            "routing.rules[0].strategy.type: unknown type 'round_robin' (did you mean 'round-robin'?); "
            "expected one of 'round-robin', 'weighted-round-robin', 'limits-alternative'",
        ),
        (
            _set("routing", "rules", 0, "strategy", value={"providers": ["openai-primary"]}),
            "routing.rules[0].strategy.type: required key is missing",
        ),
        (
            _set("providers", "openai-primary", "type", value="gemini"),
            "providers.openai-primary.type: must be 'openai' or 'anthropic'",
        ),
        (
            _set("providers", "openai-primary", "timeout_secs", value="soon"),
            "providers.openai-primary.timeout_secs: "
            "must be a valid number, unable to parse string as a number",
        ),
        (_set("providers", "openai-primary", value="openai"), "providers.openai-primary: must be a mapping"),
        (
            _set("routing", "rules", 0, "fallbacks", value="openai-backup"),
            "routing.rules[0].fallbacks: must be a list",
        ),
        (_set("server", value={"port": 70000}), "server.port: must be less than or equal to 65535"),
    ],
)
def test_a_schema_error_reads_plainly_and_names_its_path(dump: Dump, edit: Edit, expected: str) -> None:
    document = minimal_document()
    edit(document)

    assert problems_of(document, dump) == [expected]


def test_a_missing_required_key_is_named_by_its_own_path(dump: Dump) -> None:
    document = minimal_document()
    del document["routing"]["rules"][0]["name"]
    del document["providers"]["openai-backup"]["type"]

    assert problems_of(document, dump) == [
        "providers.openai-backup.type: required key is missing",
        "routing.rules[0].name: required key is missing",
    ]


def test_alternative_providers_may_be_omitted(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"][0]["strategy"] = {
        "type": "limits-alternative",
        "primary_providers": ["openai-primary"],
    }

    strategy = load(document, dump).config.routing.rules[0].strategy

    assert strategy is not None
    assert strategy.type == "limits-alternative"
    assert strategy.alternative_providers == []


def test_schema_messages_carry_no_documentation_urls(dump: Dump) -> None:
    document = minimal_document()
    document["server"] = {"port": "x", "host": 1}
    document["providers"]["openai-primary"]["max_retries"] = 99

    assert not any("http" in problem for problem in problems_of(document, dump))


# --- warnings -------------------------------------------------------------------------------------


def test_a_cross_dialect_rule_without_model_mapping_warns_naming_rule_and_provider(dump: Dump) -> None:
    document = mixed_dialects()
    document["routing"]["rules"] = [
        rule(
            "gpt4",
            strategy={
                "type": "limits-alternative",
                "primary_providers": ["openai-primary"],
                "alternative_providers": ["anthropic-primary"],
            },
        )
    ]

    assert load(document, dump).warnings == (
        "routing.rules[0] ('gpt4'): its first provider is openai but anthropic provider "
        "'anthropic-primary' has neither 'model' nor 'model_map', so the client's model name would be "
        "sent unchanged",
    )


@pytest.mark.parametrize(
    "mapping",
    [{"model": "claude-sonnet-4-5"}, {"model_map": {"gpt-4o": "claude-sonnet-4-5"}}],
)
def test_a_cross_dialect_provider_with_a_mapping_does_not_warn(dump: Dump, mapping: dict[str, Any]) -> None:
    document = mixed_dialects()
    document["providers"]["anthropic-primary"] |= mapping
    document["routing"]["rules"] = [rule("r", primary="openai-primary", fallbacks=["anthropic-primary"])]

    assert load(document, dump).warnings == ()


def test_only_providers_of_the_other_dialect_than_the_first_are_checked(dump: Dump) -> None:
    document = mixed_dialects()
    document["routing"]["rules"] = [
        rule("claude", primary="anthropic-primary", fallbacks=["anthropic-backup", "openai-primary"])
    ]

    (warning,) = load(document, dump).warnings

    assert "openai provider 'openai-primary'" in warning
    assert "anthropic-backup" not in warning


def test_a_config_without_a_catch_all_rule_warns_about_404s(dump: Dump) -> None:
    document = minimal_document()
    document["routing"]["rules"][0]["matcher"] = {"model_pattern": "^gpt-"}

    assert load(document, dump).warnings == (
        "no rule has 'matcher: {always: true}'; requests for models no rule matches will get 404",
    )


# --- check_references is pure ---------------------------------------------------------------------


def test_check_references_works_on_a_model_built_in_code() -> None:
    document = minimal_document()
    document["routing"]["rules"][0]["strategy"]["providers"] = ["openai-primary", "openia-backup"]
    config = DetourConfig.model_validate(document)

    problems, warnings = check_references(config)

    assert problems == [
        ConfigProblem(
            "routing.rules[0].strategy.providers[1]",
            "unknown provider 'openia-backup' (did you mean 'openai-backup'?)",
        )
    ]
    assert warnings == []
