"""JSON in and out of the prediction routes, through orjson.

For a one-row request orjson parses the body and writes the answer ~10× faster than the
standard library (``timeit``: 0.8 against 5–8 µs to parse, 0.3 against 7–12 µs to write on
this shared machine), a measurable share of a ~100 µs prediction (docs/service.md,
"Benchmark"). What is accepted stays the standard library's: a body orjson refuses (``NaN``,
integers past 64 bits, UTF-16, a byte-order mark, nesting past 1024) is parsed again with
``json``, which then accepts it (and the route refuses the value with its own message, as
before) or raises the same errors as before. Answers are the same values; only the spelling of
some floats differs (``0.00001`` for ``1e-05``), and non-ASCII label names are UTF-8 instead of
``\\u`` escapes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(body: bytes) -> Any:
    """``json.loads``'s result and errors (``ValueError``, ``UnicodeDecodeError``,
    ``RecursionError``), the fast way when the body is plain UTF-8 JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def dumps(payload: Any) -> bytes:
    """Compact JSON of plain data (str keys; lists, not numpy arrays)."""
    return orjson.dumps(payload)
