"""The loading pipeline: YAML, ignored sections, environment expansion, versions and files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import LoadedConfig, load_config_file, load_config_text
from sidecar.errors import ConfigError, ConfigProblem

Dump = Callable[[dict[str, Any]], str]

IGNORED_WARNING = (
    "ignoring sections Detour does not implement: "
    "api_dialect, logging, observability, routing.health_monitor, session_recording"
)


def load(text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    return load_config_text(text, source="test", env=env or {})


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    return [str(problem) for problem in caught.value.problems]


# --- the seed -------------------------------------------------------------------------------------


def test_the_seed_loads_with_one_warning_naming_all_five_ignored_sections(
    seed_path: Path, seed_env: dict[str, str]
) -> None:
    loaded = load_config_file(seed_path, env=seed_env)

    section_warnings = [w for w in loaded.warnings if w.startswith("ignoring sections")]
    assert section_warnings == [IGNORED_WARNING]
    assert loaded.warnings[0] == IGNORED_WARNING


def test_the_seeds_other_warnings_are_its_cross_dialect_rules(
    seed_path: Path, seed_env: dict[str, str]
) -> None:
    loaded = load_config_file(seed_path, env=seed_env)

    others = loaded.warnings[1:]
    assert [w.split(" ", 1)[0] for w in others] == [f"routing.rules[{i}]" for i in (1, 2, 3, 4)]
    assert all("neither 'model' nor 'model_map'" in w for w in others)


def test_the_seed_honours_its_server_section(seed_path: Path, seed_env: dict[str, str]) -> None:
    loaded = load_config_file(seed_path, env=seed_env)

    assert loaded.config.server.port == 8081
    assert loaded.config.server.host == "127.0.0.1"
    assert loaded.source == f"file:{seed_path}"


def test_the_seed_expands_its_api_keys_from_the_given_env(seed_path: Path, seed_env: dict[str, str]) -> None:
    providers = load_config_file(seed_path, env=seed_env).config.providers

    assert providers["openai-primary"].api_key == seed_env["OPENAI_API_KEY"]
    assert providers["emergency-fallback"].api_key == seed_env["EMERGENCY_API_KEY"]


def test_the_seed_keeps_its_rules_and_circuit_breaker(seed_path: Path, seed_env: dict[str, str]) -> None:
    config = load_config_file(seed_path, env=seed_env).config

    assert [rule.name for rule in config.rules_by_priority()][:2] == ["gpt-round-robin", "claude-weighted"]
    assert config.routing.circuit_breaker.failure_threshold == 5


# --- environment expansion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expanded"),
    [
        ("$KEY", "sk-123"),
        ("${KEY}", "sk-123"),
        ("Bearer ${KEY}!", "Bearer sk-123!"),
        ("$KEY$KEY", "sk-123sk-123"),
        ("$$", "$"),
        ("$$KEY", "$KEY"),
        ("a$$b", "a$b"),
        ("$$$KEY", "$sk-123"),
        ("costs $5", "costs $5"),
        ("trailing $", "trailing $"),
        ("no reference", "no reference"),
    ],
)
def test_env_references_expand_in_string_values(
    minimal: dict[str, Any], dump: Dump, written: str, expanded: str
) -> None:
    minimal["providers"]["openai-primary"]["api_key"] = written

    loaded = load(dump(minimal), {"KEY": "sk-123"})

    assert loaded.config.providers["openai-primary"].api_key == expanded


def test_a_regex_anchor_is_not_mistaken_for_a_reference(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["routing"]["rules"][0]["matcher"] = {"model_pattern": "^gpt-4$|^o1$"}

    loaded = load(dump(minimal))

    assert loaded.config.routing.rules[0].matcher.matches("gpt-4")


def test_an_expanded_number_is_validated_as_a_number(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["server"] = {"port": "${PORT}"}

    assert load(dump(minimal), {"PORT": "9000"}).config.server.port == 9000


def test_a_missing_env_var_is_an_error_naming_the_path_and_the_variable(
    minimal: dict[str, Any], dump: Dump
) -> None:
    minimal["providers"]["openai-primary"]["api_key"] = "$OPENAI_API_KEY"

    assert problems_of(dump(minimal)) == [
        "providers.openai-primary.api_key: environment variable 'OPENAI_API_KEY' is not set"
    ]


def test_every_missing_env_var_is_reported_at_once(seed_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_file(seed_path, env={})

    ids = ["openai-primary", "openai-backup", "anthropic-primary", "anthropic-backup", "emergency-fallback"]
    assert [problem.path for problem in caught.value.problems] == [f"providers.{pid}.api_key" for pid in ids]


def test_a_missing_env_var_in_a_list_names_the_index(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["routing"]["rules"][0]["fallbacks"] = ["openai-backup", "${FALLBACK}"]

    assert problems_of(dump(minimal)) == [
        "routing.rules[0].fallbacks[1]: environment variable 'FALLBACK' is not set"
    ]


def test_a_missing_env_var_does_not_also_report_a_type_error(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["server"] = {"port": "$PORT"}

    assert problems_of(dump(minimal)) == ["server.port: environment variable 'PORT' is not set"]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("${KEY", "unterminated '${'; write '$$' for a literal '$'"),
        ("${}", "invalid variable name '' in '${...}'"),
        ("${1KEY}", "invalid variable name '1KEY' in '${...}'"),
    ],
)
def test_a_malformed_reference_is_an_error(
    minimal: dict[str, Any], dump: Dump, written: str, message: str
) -> None:
    minimal["providers"]["openai-primary"]["api_key"] = written

    assert problems_of(dump(minimal), {"KEY": "x"}) == [f"providers.openai-primary.api_key: {message}"]


def test_variables_in_ignored_sections_need_not_be_set(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["logging"] = {"level": "$LOG_LEVEL"}
    minimal["routing"]["health_monitor"] = {"token": "$HEALTH_TOKEN"}

    loaded = load(dump(minimal))

    assert loaded.warnings == (
        "ignoring sections Detour does not implement: logging, routing.health_monitor",
    )


# --- secrets --------------------------------------------------------------------------------------

SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(
            lambda d: d["routing"]["rules"][0].update(matcher={"model_pattern": "$SECRET"}), id="regex"
        ),
        pytest.param(
            lambda d: d["routing"]["rules"][0]["strategy"].update(type="$SECRET"), id="strategy-type"
        ),
        pytest.param(lambda d: d["routing"]["rules"][0].update(fallbacks=["$SECRET"]), id="provider-id"),
        pytest.param(lambda d: d["providers"]["openai-primary"].update(type="$SECRET"), id="provider-type"),
        pytest.param(lambda d: d["providers"]["openai-primary"].update(timeout_secs="$SECRET"), id="number"),
        pytest.param(lambda d: d["providers"]["openai-primary"].update(headers="$SECRET"), id="mapping"),
        pytest.param(lambda d: d["providers"]["openai-primary"].update(api_kee="$SECRET"), id="unknown-key"),
    ],
)
def test_a_secret_value_never_appears_in_a_config_error(
    minimal: dict[str, Any], dump: Dump, break_it: Callable[[dict[str, Any]], None]
) -> None:
    # A regex-looking secret makes the invalid-regex case fail to compile, like a real mistake would.
    secret = SECRET + "(["
    minimal["providers"]["openai-backup"]["api_key"] = "$SECRET"
    break_it(minimal)

    with pytest.raises(ConfigError) as caught:
        load(dump(minimal), {"SECRET": secret})

    assert caught.value.problems
    assert SECRET not in str(caught.value)
    assert all(SECRET not in problem.message for problem in caught.value.problems)


@pytest.mark.parametrize(
    ("secret", "name"),
    [
        (SECRET + "\n", "x-gateway"),  # a key file's trailing newline, through the environment
        ("\u201c" + SECRET + "\u201d", "x-gateway"),  # pasted with typographic quotes
        (SECRET + "\r\nx-injected: 1", "x-gateway"),  # would split the request's header
        (SECRET, "x gateway"),  # a name that is no header name
        (SECRET, "Bearer " + SECRET),  # a credential pasted as a header's name
    ],
)
def test_what_cannot_go_into_a_header_is_a_config_error_naming_its_path(
    minimal: dict[str, Any], dump: Dump, secret: str, name: str
) -> None:
    minimal["providers"]["openai-primary"]["api_key"] = "$SECRET"
    minimal["providers"]["openai-backup"]["headers"] = {name: "$SECRET"}

    with pytest.raises(ConfigError) as caught:
        load(dump(minimal), {"SECRET": secret})

    paths = {problem.path for problem in caught.value.problems}
    if name == "x-gateway":
        assert paths == {"providers.openai-primary.api_key", "providers.openai-backup.headers.x-gateway"}
    else:
        shown = f"(a {len(name)}-character value, not shown)"
        assert paths == {f"providers.openai-backup.headers.{shown}"}
    assert SECRET not in str(caught.value)
    assert all(SECRET not in problem.path for problem in caught.value.problems)


def test_printable_ascii_keys_and_header_values_load(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["providers"]["openai-primary"]["api_key"] = "$SECRET"
    minimal["providers"]["openai-backup"]["headers"] = {"X-Gateway_Key.1": "a b\tc ~!@#$%^&*()"}

    loaded = load(dump(minimal), {"SECRET": SECRET})

    assert loaded.config.providers["openai-primary"].api_key == SECRET
    assert loaded.config.providers["openai-backup"].headers == {"X-Gateway_Key.1": "a b\tc ~!@#$%^&*()"}


# A value its YAML tag cannot convert: PyYAML raises Python's own exceptions quoting the text.
WRITTEN_SECRET = "sk-secret123"
PROVIDER_LINE = "  openai-primary: {type: openai, api_key: %s}\n"
UNCONVERTIBLE = f"""\
providers:
{PROVIDER_LINE}\
  openai-backup: {{type: openai}}
routing:
  rules:
    - {{name: d, matcher: {{always: true}}, primary: openai-primary}}
"""


@pytest.mark.parametrize(
    ("value", "suffix", "problem"),
    [
        (f"!!int {WRITTEN_SECRET}", "", "the value at line 2, column 43 is not a valid !!int"),
        (f"!!float {WRITTEN_SECRET}", "", "the value at line 2, column 43 is not a valid !!float"),
        (f"!!timestamp {WRITTEN_SECRET}", "", "the value at line 2, column 43 is not a valid !!timestamp"),
        (f"!!bool {WRITTEN_SECRET}", "", "the value at line 2, column 43 is not a valid !!bool"),
        ("2026-13-45", "", "the value at line 2, column 43 is not a valid !!timestamp"),
        ("9" * 5000, "", "the value at line 2, column 43 is not a valid !!int"),
        (f"[ok, !!int {WRITTEN_SECRET}]", "[1]", "the value at line 2, column 48 is not a valid !!int"),
        (f"{{!!int {WRITTEN_SECRET}: x}}", "", "a key at line 2, column 44 is not a valid !!int"),
    ],
    ids=["int", "float", "timestamp", "bool", "bad-date", "int-too-long", "in-a-list", "a-key"],
)
def test_a_value_its_tag_cannot_convert_is_a_config_error_naming_path_line_and_tag_only(
    value: str, suffix: str, problem: str
) -> None:
    text = UNCONVERTIBLE.replace(PROVIDER_LINE, PROVIDER_LINE % value)

    with pytest.raises(ConfigError) as caught:
        load(text)

    assert caught.value.problems == (ConfigProblem(f"providers.openai-primary.api_key{suffix}", problem),)
    assert WRITTEN_SECRET not in str(caught.value)
    assert caught.value.__cause__ is None, "no chained exception whose traceback would quote the value"
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("a: " + "[" * 5000 + "]" * 5000, "invalid YAML: nested too deeply", id="deep-yaml"),
        pytest.param("a: &x [*x]\n", "the value at line 1, column 4 contains an alias", id="recursive-alias"),
        pytest.param(
            UNCONVERTIBLE.replace("{always: true}", "{model_pattern: 'a{99999999999999999999}'}"),
            "the config could not be loaded (unexpected OverflowError)",
            id="regex-overflow",
        ),
        pytest.param(
            UNCONVERTIBLE.replace("{always: true}", "{model_pattern: '" + "(" * 5000 + ")" * 5000 + "'}"),
            "the config is nested too deeply",
            id="regex-recursion",
        ),
    ],
)
def test_an_exception_no_step_expected_is_a_config_error_naming_only_its_type(
    text: str, message: str
) -> None:
    text = text.replace(PROVIDER_LINE, PROVIDER_LINE % "x")

    with pytest.raises(ConfigError) as caught:
        load(text)

    (problem,) = caught.value.problems
    assert problem.message.startswith(message)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --- YAML and shape -------------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_line_and_column() -> None:
    text = "providers:\n  a: {type: openai\nrouting: []\n"

    (problem,) = problems_of(text)

    assert problem.startswith("invalid YAML at line 3, column")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("", "an empty document"),
        ("# only a comment\n", "an empty document"),
        ("- a\n- b\n", "a list"),
        ("just words\n", "a str"),
        ("42\n", "a int"),
    ],
)
def test_a_document_that_is_not_a_mapping_is_rejected(text: str, found: str) -> None:
    assert problems_of(text) == [f"the config must be a mapping at top level, not {found}"]


def test_problems_are_reported_in_the_order_they_appear_in_the_file(dump: Dump) -> None:
    document = {
        "routing": {"rules": [{"name": "r", "matcher": {"always": True}, "primary": "nope"}]},
        "providers": {"a": {"type": "openai", "timeout_secs": 0}, "b": {"type": "gemini"}},
        "server": {"port": -1},
    }

    paths = [problem.split(":")[0] for problem in problems_of(dump(document))]

    assert paths == ["providers.a.timeout_secs", "providers.b.type", "server.port"]


# --- version, source and files --------------------------------------------------------------------


def test_the_version_is_the_sha256_prefix_of_the_text(minimal: dict[str, Any], dump: Dump) -> None:
    text = dump(minimal)

    assert load(text).version == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_the_version_is_stable_for_the_same_text_and_changes_with_it(
    minimal: dict[str, Any], dump: Dump
) -> None:
    text = dump(minimal)

    assert load(text).version == load(text).version
    assert load(text).version != load(text + "# edited\n").version


def test_the_version_depends_on_the_text_not_the_env(minimal: dict[str, Any], dump: Dump) -> None:
    minimal["providers"]["openai-primary"]["api_key"] = "$KEY"
    text = dump(minimal)

    assert load(text, {"KEY": "one"}).version == load(text, {"KEY": "two"}).version


def test_the_source_is_whatever_the_caller_names(minimal: dict[str, Any], dump: Dump) -> None:
    loaded = load_config_text(dump(minimal), source="configmap:detour/routes", env={})

    assert loaded.source == "configmap:detour/routes"


def test_a_file_loads_with_a_file_source(tmp_path: Path, minimal: dict[str, Any], dump: Dump) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(dump(minimal), encoding="utf-8")

    assert load_config_file(path, env={}).source == f"file:{path}"


@pytest.mark.parametrize("name", ["missing.yaml", "."])
def test_an_unreadable_file_is_a_config_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name

    with pytest.raises(ConfigError) as caught:
        load_config_file(path, env={})

    (problem,) = caught.value.problems
    assert problem.path == ""
    assert problem.message.startswith(f"cannot read config file {path}")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_bytes(b"providers: \xff\xfe\n")

    with pytest.raises(ConfigError) as caught:
        load_config_file(path, env={})

    assert caught.value.problems[0].message.startswith("cannot read config file")


def test_a_config_error_is_a_list_of_path_prefixed_lines() -> None:
    error = ConfigError([ConfigProblem("a.b", "bad"), ConfigProblem("", "worse")])

    assert str(error) == "a.b: bad\nworse"
