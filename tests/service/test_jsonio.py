"""``service.jsonio.loads`` parses with orjson but accepts and refuses exactly what ``json.loads``
does, with the same values and types: the routes' refusal messages depend on them."""

from __future__ import annotations

import json

import pytest

from service import jsonio

BODIES = [
    b'{"instances": [[0.5, 1, -2.25e-3, 0.00012345678901234567]]}',
    b'{"instances": [[NaN, Infinity, -Infinity]]}',  # json reads them; the route refuses
    b'{"a": 1e400}',  # inf for json; orjson refuses
    b'{"a": 999999999999999999}',  # 18 digits: an int either way
    b'{"a": 9999999999999999999}',
    b'{"a": -9999999999999999999}',  # past int64: orjson would make it a float
    b'{"a": 18446744073709551616}',  # past uint64: orjson would make it a float
    b'{"a": [' + b"1" * 400 + b"]}",
    b'{"a": 12345678901234567890e0, "b": 1.2345678901234567890}',  # floats either way
    '\ufeff{"a": 1}'.encode(),  # a byte-order mark
    '{"a": "é"}'.encode("utf-16"),
    b'{"a": "\\ud800"}',  # a lone surrogate
    b"[" * 5000 + b"]" * 5000,  # too deep
    b"",
    b"\xff",
    b'{"a": 1, "a": 2}',
    b"-0",
]


def outcome(parse: object, body: bytes) -> tuple[str, str]:
    try:
        value = parse(body)  # type: ignore[operator]
    except RecursionError:
        return ("RecursionError", "")
    except UnicodeDecodeError:
        return ("UnicodeDecodeError", "")
    except ValueError:
        return ("ValueError", "")
    # repr shows the types (1 against 1.0) and NaN, which == would not compare.
    return ("ok", repr(value))


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_loads_is_json_loads(body: bytes) -> None:
    assert outcome(jsonio.loads, body) == outcome(json.loads, body)


def test_dumps_is_compact_json_of_the_same_values() -> None:
    payload = {"label": "é", "p": [0.123456, 1e-05, 0.5], "tag": "t", "n": None}
    assert json.loads(jsonio.dumps(payload)) == payload
    assert b" " not in jsonio.dumps(payload)
