"""Writing JSON again that Detour read from a client or a provider.

orjson reads JSON nested up to 1024 levels deep but writes at most 254, so a body Detour parsed may
be one it cannot write again. For a value orjson itself parsed (plus Detour's own scalars) nesting
is the only thing `orjson.dumps` can refuse — its integers are in range, its strings valid UTF-8,
its keys strings — so that refusal, a `TypeError`, is reported as what it is: a `TranslationError`
naming the depth. A request is then not sent that way (the candidate is skipped,
docs/architecture.md §3), and an answer is not passed on that way (the attempt fails over).

Python's own recursion limit (1000) is below orjson's read limit, so printing such a value (`repr`
in a refusal's message, `str` of an error's fields) can raise `RecursionError`: the translators
read text fields only when they are strings, and `exchange_plan` reports a refusal that could not
be printed as the same depth error.

Only writes of values that came from outside go through here; the `try` costs nothing until it
raises, and the frames Detour writes itself hold only strings and numbers it has checked.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.errors import TranslationError

MAX_WRITE_DEPTH = 254  # the deepest nesting orjson writes


def too_deep(what: str) -> TranslationError:
    return TranslationError(
        f"{what} is nested deeper than {MAX_WRITE_DEPTH} levels, more than Detour can write"
    )


def write_json(value: Any, what: str) -> bytes:
    """`orjson.dumps(value)`, or `TranslationError` naming `what` when it is nested too deeply."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise too_deep(what) from exc
