"""JSON in and out of the prediction routes, through orjson.

For a one-row request orjson parses the body and writes the answer ~10× faster than the
standard library (``timeit``: 0.8 against 5–8 µs to parse, 0.3 against 7–12 µs to write on
this shared machine), a measurable share of a ~100 µs prediction (docs/service.md,
"Benchmark"). What is accepted stays the standard library's: a body orjson refuses (``NaN``,
``1e400``, UTF-16, a byte-order mark, nesting past 1024) is parsed again with ``json``, which
then accepts it (and the route refuses the value with its own message, as before) or raises
the same errors as before; so is a body with an integer literal of 19 digits or more, which
orjson would read as a float past 64 bits (``tests/service/test_jsonio.py``). Answers are the
same values; only the spelling of some floats differs (``0.00001`` for ``1e-05``), and
non-ASCII label names are UTF-8 instead of ``\\u`` escapes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# An integer literal of 19 digits or more: orjson reads one past 64 bits as a float (``json``
# as an int, which the routes then refuse with their own message), so such a body goes to
# ``json``. Digit runs inside strings match too, which costs speed, never correctness.
_LONG_INTEGER = re.compile(rb"(?<![0-9.])[0-9]{19,}(?![0-9.eE])")


def loads(body: bytes) -> Any:
    """``json.loads``'s result and errors (``ValueError``, ``UnicodeDecodeError``,
    ``RecursionError``), the fast way when the body is plain UTF-8 JSON."""
    if _LONG_INTEGER.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def dumps(payload: Any) -> bytes:
    """Compact JSON of plain data (str keys; lists, not numpy arrays)."""
    return orjson.dumps(payload)
