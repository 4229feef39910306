"""Every check on a config document after YAML parsing, as pure functions returning problems.

Two kinds of check live here. `schema_problems` translates pydantic's `ValidationError` into
`ConfigProblem`s a user can act on: paths as they read in the YAML (``routing.rules[2].matcher``,
without pydantic's union tags), plain messages, and a did-you-mean for misspelt keys.
`check_references` does the checks that need the whole document (provider ids, rule names,
dialects) and so cannot live on a single model. Neither reads anything but its arguments.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from sidecar.config.models import (
    DetourConfig,
    LimitsAlternativeStrategy,
    ProviderConfig,
    RoundRobinStrategy,
    Rule,
    StateBackend,
    StateConfig,
    WeightedRoundRobinStrategy,
)
from sidecar.errors import ConfigProblem

Loc = tuple[str | int, ...]


def key_path(parent: str, key: object) -> str:
    return f"{parent}.{key}" if parent else str(key)


def index_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


_NAME_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,39}")
_CREDENTIAL_PREFIXES = ("sk-", "sk_", "key-", "xai-", "AKIA", "Bearer")


def shown(value: object) -> str:
    """A name written in the config (a key, a provider id, a type), quoted for a message — unless it
    might be a credential pasted in the wrong place: then only its length is told, so the message,
    and the log or Event that carries it, never holds a key (docs/operations.md)."""
    text = str(value)
    if _NAME_LIKE.fullmatch(text) and not text.startswith(_CREDENTIAL_PREFIXES):
        return repr(text)
    return f"(a {len(text)}-character value, not shown)"


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """A `` (did you mean 'x'?)`` suffix when `word` looks like a typo of a candidate, else ``''``."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {shown(close[0])}?)" if close else ""


# --- schema errors ---------------------------------------------------------------------------------


def schema_problems(
    error: ValidationError, data: object, root: type[BaseModel] = DetourConfig
) -> list[ConfigProblem]:
    """Translate a `ValidationError` raised on `data` (the document as validated against the model
    `root`) into problems."""
    problems = []
    for detail in error.errors(include_url=False):
        loc: Loc = tuple(detail["loc"])
        path = _path_of(loc, data)
        kind = detail["type"]
        ctx: Mapping[str, Any] = detail.get("ctx") or {}
        # A bad or absent discriminator is a problem of the `type` key, so name that key.
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            path = key_path(path, str(ctx.get("discriminator", "type")).strip("'"))
        problems.append(ConfigProblem(path, _message(kind, detail["msg"], ctx, loc, root)))
    return problems


def _path_of(loc: Loc, data: object) -> str:
    """The YAML path of `loc`, walking `data` alongside it to tell the user's keys from tags.

    Pydantic inserts the discriminator value of a tagged union into the location
    (``strategy.limits-alternative.primary_providers``); such a step is not a key of the document,
    so it is dropped. A key that is absent from the document is kept only as the last step, where
    it names a missing or unknown key.
    """
    path = ""
    node: object = data
    last = len(loc) - 1
    for position, item in enumerate(loc):
        if isinstance(node, list) and isinstance(item, int):
            path = index_path(path, item)
            node = node[item] if 0 <= item < len(node) else None
        elif isinstance(node, dict) and item in node:
            # A key rejected itself (a header name, say) might be a credential in the wrong place.
            rejected_key = position < last and loc[position + 1] == "[key]"
            path = key_path(path, shown(item) if rejected_key else item)
            node = node[item]
        elif item == "[key]":
            continue
        elif position == last or not isinstance(node, dict):
            path = key_path(path, item)
            node = None
    return path


def _message(kind: str, raw: str, ctx: Mapping[str, Any], loc: Loc, root: type[BaseModel]) -> str:
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return f"unknown key {shown(key)}{did_you_mean(key, _fields_at(loc[:-1], root))}"
    if kind in ("missing", "union_tag_not_found"):
        return "required key is missing"
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag", ""))
        expected = str(ctx.get("expected_tags", ""))
        tags = [part.strip().strip("'") for part in expected.split(",")]
        return f"unknown type {shown(tag)}{did_you_mean(tag, tags)}; expected one of {expected}"
    if kind == "too_short" and ctx.get("actual_length") == 0:
        return "must not be empty"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    message = raw.removeprefix("Value error, ")
    for prefix in ("Input should be ", "Value should be "):
        if message.startswith(prefix):
            message = "must be " + message.removeprefix(prefix)
    if loc and loc[-1] == "[key]":
        message = f"key {message}"
    return message


def _fields_at(loc: Loc, root: type[BaseModel]) -> list[str]:
    """Field names of the model found at `loc`, following the schema's types from `root`."""
    node: object = root
    for item in loc:
        node = _step(_unwrap(node), item)
        if node is None:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _step(node: object, item: str | int) -> object:
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(item) if isinstance(item, str) else None
        return field.annotation if field is not None else None
    origin, args = get_origin(node), get_args(node)
    if origin is list and isinstance(item, int):
        return args[0]
    if origin is dict:
        return args[1]
    if origin in (Union, types.UnionType):
        # A tagged union: pydantic's location names the member by its `type` literal.
        for member in map(_unwrap, args):
            fields = getattr(member, "model_fields", {})
            if "type" in fields and item in get_args(fields["type"].annotation):
                return member
    return None


def _unwrap(node: object) -> object:
    """Strip `Annotated[...]` and `X | None` until a model, container or real union is left."""
    while True:
        origin, args = get_origin(node), get_args(node)
        if origin is Annotated:
            node = args[0]
        elif origin in (Union, types.UnionType) and type(None) in args and len(args) == 2:
            node = next(arg for arg in args if arg is not type(None))
        else:
            return node


# --- cross-field checks ----------------------------------------------------------------------------


def check_references(config: DetourConfig) -> tuple[list[ConfigProblem], list[str]]:
    """Checks that need the whole document; returns (errors, warnings).

    Errors: a provider id a rule names but `providers` does not define; a rule with both or neither
    of `strategy` and `primary`; a matcher with neither `always: true` nor `model_pattern`; two rules
    with the same name (metrics and logs name rules, so names must identify them).

    Warnings: a rule whose candidates span both dialects where a provider of the dialect other than
    the rule's first provider has neither `model` nor `model_map` (the client's model name would be
    sent unchanged to the other vendor, which will reject it); no rule with `always: true` (requests
    for unmatched models get 404).
    """
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    known = list(config.providers)
    first_use: dict[str, int] = {}
    for index, rule in enumerate(config.routing.rules):
        base = index_path("routing.rules", index)
        if rule.name in first_use:
            other = index_path("routing.rules", first_use[rule.name])
            problems.append(
                ConfigProblem(f"{base}.name", f"duplicate rule name {shown(rule.name)} (see {other})")
            )
        else:
            first_use[rule.name] = index
        if rule.strategy is not None and rule.primary is not None:
            problems.append(ConfigProblem(base, "has both 'strategy' and 'primary'; use exactly one"))
        elif rule.strategy is None and rule.primary is None:
            problems.append(ConfigProblem(base, "needs either 'strategy' or 'primary'"))
        if not rule.matcher.always and rule.matcher.model_pattern is None:
            problems.append(ConfigProblem(f"{base}.matcher", "needs 'always: true' or a 'model_pattern'"))
        for path, provider_id in rule_references(rule, base):
            if provider_id not in config.providers:
                problems.append(
                    ConfigProblem(
                        path, f"unknown provider {shown(provider_id)}{did_you_mean(provider_id, known)}"
                    )
                )
        warning = _cross_dialect_warning(rule, base, config.providers)
        if warning:
            warnings.append(warning)
        threshold = rule.min_remaining
        if threshold is not None and threshold.requests is None and threshold.tokens is None:
            problems.append(
                ConfigProblem(f"{base}.strategy.min_remaining", "needs 'requests', 'tokens' or both")
            )
    state_problems, state_warnings = _state_problems(config.state)
    problems.extend(state_problems)
    warnings.extend(state_warnings)
    if not any(rule.matcher.always for rule in config.routing.rules):
        warnings.append(
            "no rule has 'matcher: {always: true}'; requests for models no rule matches will get 404"
        )
    return problems, warnings


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9:_.{}/-]+")


def _state_problems(state: StateConfig) -> tuple[list[ConfigProblem], list[str]]:
    """The `state` section (docs/scale-out.md). Its URL may carry a password, so no message quotes
    it, not even in part: only what is wrong with it."""
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    if state.backend is StateBackend.REDIS:
        if state.url is None:
            problems.append(ConfigProblem("state.url", "required with backend 'redis'"))
        elif not state.url.startswith(_REDIS_SCHEMES):
            problems.append(
                ConfigProblem("state.url", "must start with redis://, rediss:// or unix:// (value not shown)")
            )
    elif state.url is not None:
        warnings.append("state.url is ignored: the state backend is 'memory'")
    if not _KEY_PREFIX.fullmatch(state.key_prefix):
        problems.append(
            ConfigProblem(
                "state.key_prefix", "may hold only letters, digits and : _ . { } / - (value not shown)"
            )
        )
    return problems, warnings


def rule_references(rule: Rule, base: str) -> Iterator[tuple[str, str]]:
    """(path, provider id) for every provider `rule` names, in the order the rule tries them."""
    if rule.primary is not None:
        yield f"{base}.primary", rule.primary
    strategy = rule.strategy
    if isinstance(strategy, RoundRobinStrategy):
        for i, provider_id in enumerate(strategy.providers):
            yield index_path(f"{base}.strategy.providers", i), provider_id
    elif isinstance(strategy, WeightedRoundRobinStrategy):
        for i, weighted in enumerate(strategy.providers):
            yield f"{index_path(f'{base}.strategy.providers', i)}.id", weighted.id
    elif isinstance(strategy, LimitsAlternativeStrategy):
        for i, provider_id in enumerate(strategy.primary_providers):
            yield index_path(f"{base}.strategy.primary_providers", i), provider_id
        for i, provider_id in enumerate(strategy.alternative_providers):
            yield index_path(f"{base}.strategy.alternative_providers", i), provider_id
    for i, provider_id in enumerate(rule.fallbacks):
        yield index_path(f"{base}.fallbacks", i), provider_id


def _cross_dialect_warning(rule: Rule, base: str, providers: Mapping[str, ProviderConfig]) -> str | None:
    """Warn when the rule's first provider fixes a dialect and another-dialect provider has no mapping.

    The first provider stands for the models the rule is written for; a provider of the other type
    without `model`/`model_map` would receive that vendor's model names verbatim.
    """
    ids = list(dict.fromkeys(pid for _, pid in rule_references(rule, base) if pid in providers))
    if not ids:
        return None
    home = providers[ids[0]].type
    unmapped = [
        pid
        for pid in ids
        if providers[pid].type != home and providers[pid].model is None and not providers[pid].model_map
    ]
    if not unmapped:
        return None
    other = providers[unmapped[0]].type
    names = ", ".join(shown(pid) for pid in unmapped)
    subject = f"provider {names} has" if len(unmapped) == 1 else f"providers {names} have"
    return (
        f"{base} ({shown(rule.name)}): its first provider is {home.value} but {other.value} {subject} "
        "neither 'model' nor 'model_map', so the client's model name would be sent unchanged"
    )
