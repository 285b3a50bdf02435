"""The multipart split on a bounded body, checked against python-multipart's own streaming
parser on generated forms (service/uploads.py says why the split is ours)."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from service.uploads import FilePart, first_file


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


def _reference(body: bytes, boundary: bytes) -> FilePart | None:
    """The first file part as python-multipart's ``MultipartParser`` sees the same body."""
    found: list[FilePart] = []
    state: dict[str, object] = {}

    def part_begin() -> None:
        state.update(headers={}, name=b"", value=b"", data=[])

    def header_field(data: bytes, start: int, end: int) -> None:
        state["name"] = state["name"] + data[start:end]  # type: ignore[operator]

    def header_value(data: bytes, start: int, end: int) -> None:
        state["value"] = state["value"] + data[start:end]  # type: ignore[operator]

    def header_end() -> None:
        key = state["name"].strip().lower()  # type: ignore[attr-defined]
        state["headers"].setdefault(key, state["value"].strip())  # type: ignore[attr-defined]
        state.update(name=b"", value=b"")

    def part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])  # type: ignore[attr-defined]

    def part_end() -> None:
        headers: dict[bytes, bytes] = state["headers"]  # type: ignore[assignment]
        kind, params = parse_options_header(headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if kind == b"form-data" and (filename is not None or name in ("file", "image")):
            ctype = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
            found.append(
                FilePart(
                    name,
                    None if filename is None else filename.decode("utf-8", "replace"),
                    ctype.decode("latin-1"),
                    b"".join(state["data"]),  # type: ignore[arg-type]
                )
            )

    callbacks = {
        "on_part_begin": part_begin,
        "on_header_field": header_field,
        "on_header_value": header_value,
        "on_header_end": header_end,
        "on_part_data": part_data,
        "on_part_end": part_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    parser.write(body)
    return found[0] if found else None


_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789_-", min_size=1, max_size=12
)
_QUOTABLE = st.text(alphabet='abcXYZ019 ;.,=-_"\\', min_size=0, max_size=16)


def _quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


@st.composite
def forms(draw: st.DrawFn) -> tuple[bytes, bytes]:
    boundary = ("--" + draw(_TOKEN)).encode()
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(["file", "image", "note", draw(_TOKEN)]))
        disposition = draw(st.sampled_from([b"form-data", b"Form-Data", b"attachment"]))
        header = b"Content-Disposition: " + disposition + b"; name=" + _quoted(name)
        if draw(st.booleans()):
            header += b"; filename=" + _quoted(draw(_QUOTABLE))
        if draw(st.booleans()):
            header += b"; filename*=UTF-8''%E2%82%AC.png"
        lines = [header]
        if draw(st.booleans()):
            ctype = draw(st.sampled_from([b"image/png", b"IMAGE/JPEG; q=1", b"text/plain"]))
            lines.insert(draw(st.integers(0, 1)), b"content-type: " + ctype)
        data = draw(st.binary(max_size=64))
        if boundary in data or (b"\r\n--" + boundary) in (b"\r\n" + data):
            data = b"x"
        parts.append(b"\r\n".join(lines) + b"\r\n\r\n" + data)
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\n", boundary


@settings(max_examples=300)
@given(forms())
def test_the_split_finds_what_python_multipart_finds(case: tuple[bytes, bytes]) -> None:
    body, boundary = case
    expected = _reference(body, boundary)
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    if expected is None:
        with pytest.raises(HTTPException) as refused:
            first_file(body, content_type)
        assert refused.value.status_code == 422
    else:
        assert first_file(body, content_type) == expected


def test_a_truncated_form_is_refused_with_its_reason() -> None:
    body = form(b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc')
    for cut, reason in ((body[:-20], "unterminated part"), (b"nothing here", "boundary not found")):
        with pytest.raises(HTTPException) as refused:
            first_file(cut, "multipart/form-data; boundary=XyZ")
        assert refused.value.status_code == 422 and reason in str(refused.value.detail)
