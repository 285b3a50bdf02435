"""Multipart through python-multipart's streaming parser, on a bounded body."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st

from service.uploads import first_file


def form(*parts: bytes, boundary: bytes = b"XyZ") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\nepilogue"


def test_first_file_part_wins() -> None:
    body = form(
        b'Content-Disposition: form-data; name="comment"\r\n\r\nhello',
        b'Content-Disposition: form-data; name="upload"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--not-the-boundary",
        b'Content-Disposition: form-data; name="file"; filename="b.png"\r\n\r\nsecond',
    )
    part = first_file(body, 'multipart/form-data; boundary="XyZ"')
    assert (part.field, part.filename, part.content_type) == ("upload", "a.png", "image/png")
    assert part.data == b"\x89PNG\r\n--not-the-boundary"


def test_quoted_and_extended_filenames() -> None:
    # RFC 7578 §4.2 forbids the RFC 5987 `filename*` form: the plain `filename` is the name.
    body = form(
        b'Content-Disposition: Form-Data; NAME="f"; filename="a;b\\"c.png";'
        b" filename*=UTF-8''%E2%82%AC.png\r\n\r\nx"
    )
    part = first_file(body, "multipart/form-data; boundary=XyZ")
    assert (part.field, part.filename, part.data) == ("f", 'a;b"c.png', b"x")


def test_part_named_file_without_filename_counts() -> None:
    body = form(b'Content-Disposition: form-data; name="note"\r\n\r\nhi',
                b'Content-Disposition: form-data; name="file"\r\n\r\nok')  # fmt: skip
    assert first_file(body, "multipart/form-data; boundary=XyZ").data == b"ok"


@given(st.binary(max_size=300), st.text(max_size=40))
def test_any_bytes_give_a_part_or_a_4xx(body: bytes, boundary: str) -> None:
    try:
        first_file(body, f"multipart/form-data; boundary={boundary}")
    except HTTPException as exc:
        assert 400 <= exc.status_code < 500


@given(st.binary(max_size=200))
def test_file_bytes_survive_the_round_trip(data: bytes) -> None:
    boundary = b"----b0undary"
    if boundary in data:
        return
    body = form(
        b'Content-Disposition: form-data; name="file"; filename="x"\r\n\r\n' + data,
        boundary=boundary,
    )
    assert first_file(body, "multipart/form-data; boundary=----b0undary").data == data


def test_oversized_boundary_is_refused() -> None:
    with pytest.raises(HTTPException):
        first_file(b"", "multipart/form-data; boundary=" + "x" * 300)
