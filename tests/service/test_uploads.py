"""Multipart parsing on a bounded buffer, and header parameters."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st

from service.uploads import first_file, header_params


def form(*parts: bytes, boundary: bytes = b"XyZ") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return b"preamble\r\n" + body + b"--" + boundary + b"--\r\nepilogue"


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


def test_part_without_headers_is_skipped() -> None:
    body = form(b"\r\nnaked", b'Content-Disposition: form-data; name="file"\r\n\r\nok')
    assert first_file(body, "multipart/form-data; boundary=XyZ").data == b"ok"


def test_header_params_handle_quotes_and_case() -> None:
    kind, params = header_params(b'Form-Data; NAME="f"; filename="a;b\\"c.png"')
    assert kind == b"form-data"
    assert params == {b"name": b"f", b"filename": b'a;b"c.png'}


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
