"""Turn the text of a ``routes.yaml`` into a validated, frozen `DetourConfig` (docs/architecture.md §2).

Loading is a pipeline of pure steps: parse the YAML, drop the sections Detour accepts but does not
implement, expand ``$VAR`` references from the environment it is given, validate the schema, then
check cross references. Each step collects problems rather than stopping at the first, so a user
running ``detour validate`` sees everything wrong at once. The environment is passed in, never
read here, and the only I/O is `load_config_file` reading its file.

Expanded values are often API keys: no message ever quotes one (see `_scrub`). Nor does a message
quote a value written in the file: a YAML value that cannot be converted (``api_key: !!int sk-…``)
is named by its path, line and tag only. Whatever goes wrong while loading is a `ConfigError`; an
unexpected exception is reported by its type alone, never by its message (which may quote the text).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from sidecar.config.models import DetourConfig
from sidecar.config.validate import check_references, index_path, key_path, schema_problems
from sidecar.errors import ConfigError, ConfigProblem

IGNORED_TOP_LEVEL = ("api_dialect", "logging", "observability", "session_recording")
IGNORED_ROUTING = ("health_monitor",)

# `$$` is a literal `$`; `${NAME}` and `$NAME` are references. A `$` followed by anything else is
# kept as written, so regex anchors such as `^gpt-4$` need no escaping.
_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\{))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Shorter values cannot be credentials, and hiding them would garble digits in unrelated messages.
_MIN_SCRUBBED_LENGTH = 4
_PATH_STEP = re.compile(r"\[(\d+)\]|([^.\[]+)")


@dataclass(frozen=True)
class LoadedConfig:
    config: DetourConfig
    version: str  # first 12 hex chars of the sha256 of the raw text: names this config in logs
    source: str  # where it came from, e.g. "file:/etc/detour/routes.yaml"
    warnings: tuple[str, ...]


def load_config_file(path: str | os.PathLike[str], *, env: Mapping[str, str]) -> LoadedConfig:
    """Read and load a config file; an unreadable file is a `ConfigError` like any other problem."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigProblem("", f"cannot read config file {name}: {reason}")]) from exc
    return load_config_text(text, source=f"file:{name}", env=env)


def load_config_text(text: str, *, source: str, env: Mapping[str, str]) -> LoadedConfig:
    """Parse, expand and validate `text`; raise `ConfigError` carrying every problem found.

    Cross-field checks need a built model, so they report only once the schema errors are fixed.
    Nothing else escapes: an exception no step expected (a regex too deeply nested for `re`, a
    document too deep to walk) becomes a `ConfigError` naming only the exception's type, and is not
    chained, so no traceback printed later can quote the text either.
    """
    try:
        return _load(text, source, env)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError([ConfigProblem("", "the config is nested too deeply")]) from None
    except Exception as exc:
        message = f"the config could not be loaded (unexpected {type(exc).__name__})"
        raise ConfigError([ConfigProblem("", message)]) from None


def _load(text: str, source: str, env: Mapping[str, str]) -> LoadedConfig:
    document = parse_yaml_mapping(text)
    document, ignored = _strip_ignored(document)
    warnings = []
    if ignored:
        warnings.append(f"ignoring sections Detour does not implement: {', '.join(sorted(ignored))}")

    used: dict[str, str] = {}
    problems: list[ConfigProblem] = []
    expanded = _expand(document, "", env, problems, used)

    later: list[ConfigProblem] = []
    config: DetourConfig | None = None
    try:
        config = DetourConfig.model_validate(expanded)
    except ValidationError as exc:
        later = schema_problems(exc, expanded)
    if config is not None:
        later, reference_warnings = check_references(config)
        warnings.extend(reference_warnings)
    # A value whose reference failed still reads `$NAME`; any further complaint about it is noise.
    unexpanded = {problem.path for problem in problems}
    problems.extend(problem for problem in later if problem.path not in unexpanded)

    if problems or config is None:
        problems.sort(key=lambda problem: _document_order(problem.path, document))
        raise ConfigError([ConfigProblem(p.path, _scrub(p.message, used)) for p in problems])
    return LoadedConfig(
        config=config,
        version=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        source=source,
        warnings=tuple(_scrub(warning, used) for warning in warnings),
    )


class _UnconvertibleNode(yaml.YAMLError):
    """A node whose value its tag's constructor could not build; carries the node, not the error."""

    def __init__(self, node: yaml.Node) -> None:
        super().__init__(node.tag)
        self.node = node


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, where a value that cannot be converted is a YAML error like any other.

    The safe constructors convert scalars with Python's own `int`, `float`, `datetime`, `base64`…
    and let their exceptions escape: `!!int sk-…` raises a `ValueError` quoting the text, and
    `!!timestamp x` an `AttributeError`. Each is caught at the node that failed (the innermost
    `construct_object`) and replaced, unchained, by `_UnconvertibleNode`, which keeps only the node.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            # Always deep: a collection's constructor finishes inside this call (not later, in
            # `construct_document`), so its error is caught here, at its node. Cycles were refused
            # before construction (`_check_expanded_size`).
            return super().construct_object(node, deep=True)
        except _UnconvertibleNode:
            raise  # a node inside this one, already named
        except Exception:  # a constructor's own error (a tag it does not know, !!binary not base64)
            raise _UnconvertibleNode(node) from None


def parse_yaml_mapping(text: str) -> dict[object, object]:
    loader: _ConfigLoader | None = None
    root: yaml.Node | None = None
    try:
        loader = _ConfigLoader(text)  # its reader already rejects control characters
        root = loader.get_single_node()
        if root is not None:
            _check_expanded_size(root)
        document = loader.construct_document(root) if root is not None else None
    except _UnconvertibleNode as exc:
        raise ConfigError([_unconvertible(exc.node, root)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = exc.problem or exc.context or "syntax error"
        raise ConfigError([ConfigProblem("", f"invalid YAML{where}: {reason}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem("", f"invalid YAML: {exc}")]) from exc
    except RecursionError:
        raise ConfigError([ConfigProblem("", "invalid YAML: nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(document, dict):
        found = "an empty document" if document is None else f"a {type(document).__name__}"
        raise ConfigError([ConfigProblem("", f"the config must be a mapping at top level, not {found}")])
    return document


MAX_EXPANDED_NODES = 100_000  # far beyond any real routes.yaml; a few aliases can make billions


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it beyond `MAX_EXPANDED_NODES` ("billion laughs").

    PyYAML shares an aliased node rather than copying it, but every later step (variable
    expansion, validation) walks the document as a tree, so a 600-byte file of nested aliases
    would take minutes and gigabytes. The expanded size is counted on the node graph, each node
    once (memoized, without recursion), so the check itself is linear in the file.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path from the root: meeting one again is a cycle
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done:
            if id(node) in open_nodes:
                path, _ = _node_path(root, node)
                where = f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"
                message = f"the value at {where} contains an alias to itself"
                raise ConfigError([ConfigProblem(path, message)]) from None
            open_nodes.add(id(node))
            pending.append((node, True))
            pending.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        size = 1 + sum(sizes.get(id(child), 0) for child in children)
        if size > MAX_EXPANDED_NODES:
            message = f"the config expands to more than {MAX_EXPANDED_NODES:,} values (nested aliases?)"
            raise ConfigError([ConfigProblem("", message)]) from None
        sizes[id(node)] = size


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _unconvertible(node: yaml.Node, root: yaml.Node | None) -> ConfigProblem:
    """The problem for a value its tag cannot convert: path, position and tag, never the text."""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    where = f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"
    path, is_key = _node_path(root, node) if root is not None else ("", False)
    what = "a key" if is_key else "the value"
    return ConfigProblem(path, f"{what} at {where} is not a valid {tag}")


def _node_path(root: yaml.Node, target: yaml.Node) -> tuple[str, bool]:
    """The YAML path of `target` in the tree under `root`, and whether it is a mapping key there.

    Walked without recursion (the tree may be as deep as the composer allowed); a node that is not
    found (it should always be) gives the empty path, and the problem still names its line.
    """
    pending: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()  # an aliased node is walked once, at its first path
    while pending:
        node, path = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node is target:
            return path, False
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key is target:
                    return path, True
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                pending.append((value, key_path(path, name)))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, index_path(path, i)) for i, item in enumerate(node.value))
    return "", False


def _strip_ignored(document: dict[object, object]) -> tuple[dict[object, object], list[str]]:
    """Drop the seed's sections Detour does not implement; return the rest and the dotted names."""
    ignored = [name for name in IGNORED_TOP_LEVEL if name in document]
    kept = {key: value for key, value in document.items() if key not in IGNORED_TOP_LEVEL}
    routing = kept.get("routing")
    if isinstance(routing, dict):
        ignored += [f"routing.{name}" for name in IGNORED_ROUTING if name in routing]
        kept["routing"] = {key: value for key, value in routing.items() if key not in IGNORED_ROUTING}
    return kept, ignored


def _expand(
    node: object, path: str, env: Mapping[str, str], problems: list[ConfigProblem], used: dict[str, str]
) -> object:
    """Expand references in every string value (keys are left alone: they are names, not values)."""
    if isinstance(node, dict):
        return {key: _expand(value, key_path(path, key), env, problems, used) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand(item, index_path(path, i), env, problems, used) for i, item in enumerate(node)]
    if isinstance(node, str):
        return _expand_string(node, path, env, problems, used)
    return node


def _expand_string(
    value: str, path: str, env: Mapping[str, str], problems: list[ConfigProblem], used: dict[str, str]
) -> str:
    def replace(match: re.Match[str]) -> str:
        dollar, braced, bare, unterminated = match.groups()
        if dollar:
            return "$"
        if unterminated:
            problems.append(ConfigProblem(path, "unterminated '${'; write '$$' for a literal '$'"))
            return match.group(0)
        name = braced if braced is not None else bare
        if not _NAME.fullmatch(name):
            problems.append(ConfigProblem(path, f"invalid variable name {name!r} in '${{...}}'"))
            return match.group(0)
        if name not in env:
            problems.append(ConfigProblem(path, f"environment variable {name!r} is not set"))
            return match.group(0)
        used[name] = env[name]
        return env[name]

    return _REFERENCE.sub(replace, value)


def _scrub(message: str, used: Mapping[str, str]) -> str:
    """Replace any expanded value quoted in `message` by the reference it came from.

    Detour's own messages never quote a value, but a few pass on the offending input (an invalid
    regex, an unknown strategy type), and that input may have come from a variable.
    """
    for name, value in sorted(used.items(), key=lambda item: -len(item[1])):
        if len(value) >= _MIN_SCRUBBED_LENGTH:
            message = message.replace(value, f"${{{name}}}")
    return message


def _document_order(path: str, document: object) -> tuple[int, ...]:
    """A sort key putting problems in the order their paths appear in the file.

    Keys absent from the document (a missing key) sort after their siblings; a path that does not
    parse against the document (a key containing '.') degrades to a coarser position, never fails.
    """
    order: list[int] = []
    node: object = document
    for match in _PATH_STEP.finditer(path):
        index, key = match.groups()
        if index is not None and isinstance(node, list):
            position = int(index)
            node = node[position] if position < len(node) else None
        elif key is not None and isinstance(node, dict):
            keys = list(node)
            position = keys.index(key) if key in node else len(keys)
            node = node.get(key)
        else:
            position, node = 1 << 30, None
        order.append(position)
    return tuple(order)
