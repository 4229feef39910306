"""Hypothesis strategies for dialect payloads: texts, tool names and ids, tool-call arguments, and an
answer (text fragments, then tool calls whose JSON arguments are cut anywhere) to stream."""

from __future__ import annotations

import itertools

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(min_size=1, max_size=24)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True)
call_ids = st.from_regex(r"(call|toolu)_[A-Za-z0-9]{4,12}", fullmatch=True)
json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
tool_calls = st.lists(st.tuples(call_ids, names, arguments), min_size=1, max_size=3, unique_by=lambda c: c[0])


@st.composite
def answers(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """Text fragments, then tool calls whose JSON arguments are cut into arbitrary fragments."""
    fragments = draw(st.lists(texts, max_size=4))
    calls = []
    for call_id, name, args in draw(st.none() | tool_calls) or ():
        encoded = orjson.dumps(args).decode()
        cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=3)))
        bounds = [0, *cuts, len(encoded)]
        calls.append((call_id, name, [encoded[a:b] for a, b in itertools.pairwise(bounds)]))
    return fragments, calls
