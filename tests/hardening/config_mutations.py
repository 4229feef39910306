"""Seeded mutations of a valid `routes.yaml`, for the config fuzz.

A mutation starts from a seed (the shared fixture in tests/config/fixtures, a minimal config, or
the fuzz's own live config) and changes it once, either as a document (change a value's type,
delete or add a key, a huge string or number, an unknown provider) or as text (a YAML tag, a
duplicated key, deep nesting, bytes that are not UTF-8, a cut, a control character). The same
seed and index always give the same mutation.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "config" / "fixtures"
MARK = "DETOURSECRET"
# The environment the fixture's `$VAR`s expand from: every value a secret the loader must not quote.
SEED_ENV = {
    "OPENAI_API_KEY": f"sk-{MARK}-openai-primary-1a2b",
    "OPENAI_BACKUP_KEY": f"sk-{MARK}-openai-backup-3c4d",
    "ANTHROPIC_API_KEY": f"sk-ant-{MARK}-primary-5e6f",
    "ANTHROPIC_BACKUP_KEY": f"sk-ant-{MARK}-backup-7a8b",
    "EMERGENCY_API_KEY": f"sk-{MARK}-emergency-9c0d",
}
LITERAL_KEY = f"sk-{MARK}-written-in-the-file-42"
TAGS = (
    "!!int",
    "!!float",
    "!!bool",
    "!!null",
    "!!str",
    "!!timestamp",
    "!!binary",
    "!!set",
    "!!omap",
    "!!python/object:os.system",
    "!!python/name:os.system",
    "!!python/object/apply:os.system",
    "!custom",
)
_SCALAR_LINE = re.compile(r"^(\s*(?:-\s+)?[\w-]+:\s+)([^\s#{\[].*)$")
_KEY_LINE = re.compile(r"^\s*(?:-\s+)?[\w-]+:")


def fixture_seed() -> str:
    return (FIXTURES / "seed-routing-strategies.yaml").read_text()


def minimal_seed() -> str:
    document = {
        "providers": {
            "openai-primary": {"type": "openai", "api_key": LITERAL_KEY},
            "openai-backup": {"type": "openai", "api_key": "${OPENAI_BACKUP_KEY}"},
        },
        "routing": {
            "rules": [
                {
                    "name": "default",
                    "matcher": {"always": True},
                    "strategy": {"type": "round-robin", "providers": ["openai-primary", "openai-backup"]},
                }
            ]
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class Mutation:
    name: str  # the operator, for reports
    text: str | bytes  # bytes: not UTF-8 (the loader reads a file)


# --- document operators ----------------------------------------------------------------------------


def _nodes(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _nodes(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _nodes(value, (*path, index))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return document


def _other_type(rng: random.Random, value: Any) -> Any:
    options: list[Any] = [
        12,
        -1,
        0,
        3.5,
        float("inf"),
        float("nan"),
        True,
        None,
        "a string",
        [value],
        {"nested": value},
        [],
        {},
        10**400,
        "9" * 5000,
    ]
    return rng.choice([option for option in options if type(option) is not type(value)] or options)


def _change_type(rng: random.Random, document: Any) -> Any:
    path, value = rng.choice(_nodes(document)[1:])
    return _replace(document, path, _other_type(rng, value))


def _delete_key(rng: random.Random, document: Any) -> Any:
    mapping = rng.choice([node for _, node in _nodes(document) if isinstance(node, dict) and node])
    del mapping[rng.choice(list(mapping))]
    return document


def _add_key(rng: random.Random, document: Any) -> Any:
    mappings = [node for _, node in _nodes(document) if isinstance(node, dict)]
    rng.choice(mappings)[rng.choice(["unexpected", "api_kee", "primary", "type", "weight", "x" * 300])] = (
        rng.choice([1, "two", [3], {"four": 4}])
    )
    return document


def _huge_value(rng: random.Random, document: Any) -> Any:
    scalars = [(path, node) for path, node in _nodes(document) if not isinstance(node, dict | list)]
    path, _ = rng.choice(scalars)
    huge = rng.choice(["x" * 100_000, 10**4000, -(10**400), 1e308 * 10, "é" * 20_000])
    return _replace(document, path, huge)


def _unknown_provider(rng: random.Random, document: Any) -> Any:
    names = set(document.get("providers", {})) if isinstance(document, dict) else set()
    references = [(path, node) for path, node in _nodes(document) if isinstance(node, str) and node in names]
    if not references:
        return _change_type(rng, document)
    path, _ = rng.choice(references)
    return _replace(document, path, rng.choice(["no-such-provider", "openai-bakup", ""]))


def _document_operator(operator: Callable[[random.Random, Any], Any]) -> Callable[[random.Random, str], str]:
    def mutate(rng: random.Random, text: str) -> str:
        document = yaml.safe_load(text)
        return yaml.safe_dump(operator(rng, document), sort_keys=False, allow_unicode=True)

    return mutate


# --- text operators --------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _tag(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    scalars = [index for index, line in enumerate(lines) if _SCALAR_LINE.match(line)]
    index = rng.choice(scalars)
    lines[index] = _SCALAR_LINE.sub(lambda m: f"{m[1]}{rng.choice(TAGS)} {m[2]}", lines[index])
    return "\n".join(lines)


def _duplicate_key(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    keyed = [index for index, line in enumerate(lines) if _KEY_LINE.match(line)]
    index = rng.choice(keyed)
    copy = lines[index].replace("- ", "  ", 1) if lines[index].lstrip().startswith("- ") else lines[index]
    lines.insert(index + 1, copy)
    return "\n".join(lines)


DEPTHS = [
    ("flow-list", 100),
    ("flow-list", 500),
    ("block-list", 1_100),
    ("block-list", 3_000),
    ("flow-map", 1_500),
    ("flow-map", 3_000),
]


def _deep_nesting(rng: random.Random, text: str) -> str:
    """Nesting past Python's recursion limit (1000), as flow mappings or block sequences. (Deep flow
    sequences are as valid a test but PyYAML scans them in quadratic time — 1100 levels take about
    a second — so they stay shallow here.)"""
    kind, depth = rng.choice(DEPTHS)
    if kind == "block-list":
        return text + "\nextra:\n" + "- " * depth + "1\n"
    opener, closer = ("[", "]") if kind == "flow-list" else ("{a: ", "}")
    return text + f"\nextra: {opener * depth}1{closer * depth}\n"


def _self_alias(rng: random.Random, text: str) -> str:
    return text + "\nloop: &loop [*loop]\n" if rng.random() < 0.5 else "base: &b {x: 1}\n" + text


def _huge_number(rng: random.Random, text: str) -> str:
    """A number too long for Python's int() (4300 decimal digits), or past a float's range, unquoted.
    (The hex one stays printable: at 5000 hex digits pydantic cannot print a wrong `type` and writes
    'Exception ignored' to stderr — harmless, but it fails a pytest run.)"""
    lines = _lines(text)
    scalars = [index for index, line in enumerate(lines) if _SCALAR_LINE.match(line)]
    index = rng.choice(scalars)
    number = rng.choice(["9" * 5000, "1e999", "-1e999", "0x" + "f" * 3000, "1_000_000_000_000_000"])
    lines[index] = _SCALAR_LINE.sub(lambda m: f"{m[1]}{number}", lines[index])
    return "\n".join(lines)


def _cut(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text))]


def _control_character(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text))
    character = rng.choice(["\x00", "\x07", "\x1b", "\ufeff", "\ud800", "\t", "\r", "\u2028"])
    return text[:at] + character + text[at:]


def _dedent(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    indented = [index for index, line in enumerate(lines) if line.startswith("  ")]
    index = rng.choice(indented)
    lines[index] = lines[index][2:]
    return "\n".join(lines)


def _not_utf8(rng: random.Random, text: str) -> bytes:
    raw = text.encode()
    at = rng.randrange(len(raw))
    return raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + raw[at:]


OPERATORS: dict[str, Callable[[random.Random, str], str | bytes]] = {
    "change-type": _document_operator(_change_type),
    "delete-key": _document_operator(_delete_key),
    "add-key": _document_operator(_add_key),
    "huge-value": _document_operator(_huge_value),
    "unknown-provider": _document_operator(_unknown_provider),
    "yaml-tag": _tag,
    "duplicate-key": _duplicate_key,
    "huge-number": _huge_number,
    "deep-nesting": _deep_nesting,
    "self-alias": _self_alias,
    "cut": _cut,
    "control-character": _control_character,
    "dedent": _dedent,
    "not-utf8": _not_utf8,
}


def mutate(seed_text: str, rng: random.Random, index: int) -> Mutation:
    """The `index`-th mutation: the operators take turns, so every one is used in a short run."""
    names = sorted(OPERATORS)
    name = names[index % len(names)]
    return Mutation(name, OPERATORS[name](rng, seed_text))


def billion_laughs(levels: int) -> str:
    """A config of a few hundred bytes whose aliases expand to 10**levels strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    providers = "providers: {p: {type: openai}}"
    rules = f"routing: {{rules: [{{name: r, matcher: {{always: true}}, primary: p}}], extra: *a{levels - 1}}}"
    return "\n".join([*lines, providers, rules]) + "\n"
