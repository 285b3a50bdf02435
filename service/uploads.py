"""Read a request body under a size limit, and take the image out of a multipart form.

The limit is enforced while reading (a declared ``Content-Length`` is refused up front, a
chunked body as soon as it crosses the limit), so no client can make the service buffer more
than ``max_upload_bytes``. Multipart parsing works on that bounded buffer with ``bytes.find``:
no temporary files (the root filesystem may be read-only) and no per-chunk Python loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

# `; key=value` or `; key="quoted \"value\""` parameters of a header (RFC 7578 / 9110).
_PARAM = re.compile(rb';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body exceeds the limit of {limit} bytes")


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
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str | None
    content_type: str
    data: bytes


def header_params(value: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """``b'form-data; name="file"'`` → ``(b'form-data', {b'name': b'file'})``; names lower-cased."""
    kind, _, rest = value.partition(b";")
    params: dict[bytes, bytes] = {}
    for match in _PARAM.finditer(b";" + rest):
        raw = match.group(2).strip()
        if raw[:1] == b'"' and raw[-1:] == b'"' and len(raw) >= 2:
            raw = raw[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        params.setdefault(match.group(1).lower(), raw)
    return kind.strip().lower(), params


def _bad_form(reason: str) -> HTTPException:
    return HTTPException(
        422, detail=f"malformed multipart body ({reason}); send the image as form field 'file'"
    )


def first_file(body: bytes, content_type: str) -> FilePart:
    """The first part with a filename (or named ``file``/``image``) of a multipart/form-data."""
    _, params = header_params(content_type.encode("latin-1", "replace"))
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 200:
        raise _bad_form("no boundary in Content-Type")
    delimiter = b"--" + boundary
    position = body.find(delimiter)
    if position < 0:
        raise _bad_form("boundary not found")
    position += len(delimiter)
    next_delimiter = b"\r\n" + delimiter
    while body[position : position + 2] != b"--":
        if body[position : position + 2] != b"\r\n":
            raise _bad_form("expected CRLF after a boundary")
        position += 2
        end = body.find(next_delimiter, position)
        if end < 0:
            raise _bad_form("unterminated part")
        part = _parse_part(body, position, end)
        if part is not None:
            return part
        position = end + len(next_delimiter)
    raise HTTPException(422, detail="no file in the form; send the image as form field 'file'")


def _parse_part(body: bytes, start: int, end: int) -> FilePart | None:
    if body.startswith(b"\r\n", start):
        header_end, data_start = start, start + 2
    else:
        header_end = body.find(b"\r\n\r\n", start, end)
        if header_end < 0:
            raise _bad_form("part without a blank line after its headers")
        data_start = header_end + 4
    disposition, content_type = b"", b""
    for line in body[start:header_end].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-disposition":
            disposition = value.strip()
        elif name == b"content-type":
            content_type = value.strip()
    kind, params = header_params(disposition)
    if kind != b"form-data":
        return None
    field = params.get(b"name", b"").decode("utf-8", "replace")
    raw_filename = params.get(b"filename", params.get(b"filename*"))
    if raw_filename is None and field not in ("file", "image"):
        return None
    return FilePart(
        field=field,
        filename=None if raw_filename is None else raw_filename.decode("utf-8", "replace"),
        content_type=content_type.decode("latin-1").split(";", 1)[0].strip().lower(),
        data=body[data_start:end],
    )
