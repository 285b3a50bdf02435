"""A prediction's 200 answer, with its raw headers written out directly.

Starlette's ``Response`` renders its content and builds its headers through ``MutableHeaders``
on every request; the prediction routes know their body and its type already, so here the raw
header list is built as uvicorn takes it (any extra, ``content-length``, ``content-type``: the
same headers in the same order as ``Response`` would send). ``__call__`` is Starlette's own.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from service import jsonio


class Answer(Response):
    def __init__(
        self,
        body: bytes,
        content_type: bytes = b"application/json",
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            *extra,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", content_type),
        ]


def json_answer(payload: Any) -> Answer:
    """200 with the compact JSON of ``payload`` (plain data: str keys, lists, no numpy)."""
    return Answer(jsonio.dumps(payload))
