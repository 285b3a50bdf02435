"""uvicorn's httptools protocol with a limit on the request line + headers.

httptools (llhttp) has no such limit and uvicorn offers one only for h11
(``h11_max_incomplete_event_size``): a 32 MB header to ``/health/live`` was accepted, and eight
such connections added 300 MB. h11 enforces the limit but costs throughput (see docs/service.md,
"Benchmark": the h11 configuration of ``make bench-service``), so this keeps httptools and counts
the bytes received while a request's headers are incomplete. Over ``max_header_bytes`` the
client gets a 431 and the connection closes; the parser never buffers more than one read past
the limit. The count is an upper bound (a read that ends one request's body and starts the next
request's headers is counted whole), so the limit errs on the side of refusing.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class BoundedHeadersProtocol(HttpToolsProtocol):
    max_header_bytes = 16_384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._headers_pending = False

    @classmethod
    def with_limit(cls, max_header_bytes: int) -> type[BoundedHeadersProtocol]:
        return type(cls.__name__, (cls,), {"max_header_bytes": max_header_bytes})

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._headers_pending:
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_pending = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._headers_pending = False
        super().on_headers_complete()

    def _refuse(self) -> None:
        self._headers_pending = False
        body = json.dumps(
            {"detail": f"request headers exceed the limit of {self.max_header_bytes} bytes"}
        ).encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[431],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
