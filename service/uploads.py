"""Read a request body under a size limit, and take the image out of a multipart form.

The limit is enforced while reading (a declared ``Content-Length`` is refused up front, a
chunked body as soon as it crosses the limit), so no client can make the service buffer more
than ``max_upload_bytes``. The form is then split on the bounded buffer: no temporary files (the
root filesystem may be read-only).

Header grammar (quoting, parameter names, RFC 7578's refusal of the RFC 5987 ``filename*``
form, which is ignored: ``filename`` wins) is python-multipart's ``parse_options_header``. The
framing, finding the boundary lines, is written here with ``bytes.find``, because
python-multipart's streaming ``MultipartParser`` walks the boundary and part headers byte by
byte in Python, and that did not hold the service's throughput target. Measured here:

- one 375-byte form with a small PNG, ``timeit`` min of 5: 22 µs through ``MultipartParser``
  with callbacks, 4–5 µs with this split (most of it the two ``parse_options_header`` calls);
- a whole ``/predict`` in-process (ASGI, interleaved A/B, median of 7 rounds): 486–499 µs
  through ``MultipartParser``, 0.96–0.975× the hand-written comparison app's speed, against
  446 µs and 1.10× with the split;
- ``make bench-service`` (uvicorn + wrk, 5 interleaved rounds): see docs/service.md.

``tests/service/test_uploads.py`` checks this split against ``MultipartParser`` itself on
generated forms (the same part, or both refuse).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

MAX_BOUNDARY = 200  # RFC 2046 allows 70; some clients go further, none this far


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge(limit)
        except ValueError:
            raise HTTPException(400, detail="invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    # ``request.receive`` directly: ``request.stream()`` adds an async generator per request.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str | None
    content_type: str
    data: bytes


def _bad_form(reason: str) -> HTTPException:
    return HTTPException(
        422, detail=f"malformed multipart body ({reason}); send the image as form field 'file'"
    )


def first_file(body: bytes, content_type: str) -> FilePart:
    """The first part with a filename (or named ``file``/``image``) of a multipart/form-data."""
    # Starlette decodes headers as latin-1, so this round-trips; anything else is not a boundary.
    _, params = parse_options_header(content_type.encode("latin-1", "replace"))
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= MAX_BOUNDARY:
        raise _bad_form("no boundary in Content-Type")
    delimiter = b"--" + boundary
    next_delimiter = b"\r\n" + delimiter
    # The first delimiter opens the body or follows the preamble's CRLF (RFC 2046 §5.1.1).
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        found = body.find(next_delimiter)
        if found < 0:
            raise _bad_form("boundary not found")
        position = found + len(next_delimiter)
    while body[position : position + 2] != b"--":
        # Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise _bad_form("expected CRLF after a boundary")
        position = line_end + 2
        end = body.find(next_delimiter, position)
        if end < 0:
            raise _bad_form("unterminated part")
        part = _part(body, position, end)
        if part is not None:
            return part
        position = end + len(next_delimiter)
    raise HTTPException(422, detail="no file in the form; send the image as form field 'file'")


def _part(body: bytes, start: int, end: int) -> FilePart | None:
    """The part between ``start`` and ``end`` if it is the file, else ``None``."""
    if body.startswith(b"\r\n", start):
        header_end, data_start = start, start + 2  # a part with no headers
    else:
        header_end = body.find(b"\r\n\r\n", start, end)
        if header_end < 0:
            raise _bad_form("part without a blank line after its headers")
        data_start = header_end + 4
    headers: dict[bytes, bytes] = {}
    for line in body[start:header_end].split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if not colon:
            raise _bad_form("part header without ':'")
        headers.setdefault(key.strip().lower(), value.strip())
    kind, params = parse_options_header(headers.get(b"content-disposition", b""))
    if kind != b"form-data":
        return None
    name = params.get(b"name", b"").decode("utf-8", "replace")
    filename = params.get(b"filename")
    if filename is None and name not in ("file", "image"):
        return None
    # Only the media type is used, never its parameters.
    ctype = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
    return FilePart(
        name,
        None if filename is None else filename.decode("utf-8", "replace"),
        ctype.decode("latin-1"),
        body[data_start:end],
    )


async def read_first_file(request: Request, content_type: str, limit: int) -> FilePart:
    """The first file part of a multipart/form-data body, read under ``limit``."""
    return first_file(await read_body(request, limit), content_type)
