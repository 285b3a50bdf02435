"""uvicorn's httptools protocol with a limit on the request line + headers.

httptools (llhttp) has no such limit and uvicorn offers one only for h11
(``h11_max_incomplete_event_size``): a 32 MB header to ``/health/live`` was accepted, and eight
such connections added 300 MB. h11 enforces the limit but costs throughput (see docs/service.md,
"Benchmark": the h11 configuration of ``make bench-service``), so this keeps httptools and counts
the header bytes two ways, because either alone can be bypassed:

- when the headers are complete (``on_headers_complete``, before the app is started) their
  exact size is summed from what uvicorn's own callbacks collected, the URL and every header
  line, whichever read completed them: headers that arrive whole in one read, or whose last
  piece completes them, are measured here (counting only reads *after* a feed missed both: a
  100,000-byte header in one ``sendall``, or 20 KB in 4 KiB pieces, got a 200). Summing once
  there instead of overriding ``on_url``/``on_header`` (a call per header) halves what the
  limit costs: 2.5 → 1.0 µs a request of a ~160 µs served prediction (``python -m
  bench.protocol``). What a single read can hold before that sum is bounded by the event
  loop's read size (256 KiB);
- a header still incomplete after a read is buffered inside httptools with no callback, so while
  the headers are pending every read counts whole: a client that never finishes its headers is
  refused after at most one read past the limit. That count is an upper bound (a read that ends
  one request's body and starts the next request's headers counts whole), so it errs on the
  side of refusing; a body in the same read as complete headers is never counted.

Over ``max_header_bytes`` the client gets a 431 and the connection closes; no request reaches
the app. A request the parser refuses (a bad ``Content-Length``, chunk size or request line) gets
uvicorn's 400 with a JSON body like every other error of the service, instead of plain text.
Neither reaches the app's metrics middleware, so both are counted through ``on_refused``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# The scope's state key under which the status the protocol answered a broken body with is left.
REFUSED_STATUS = "mlops.refused_status"


class HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools re-raises it wrapped."""


class BoundedHeadersProtocol(HttpToolsProtocol):
    max_header_bytes = 16_384
    on_refused: Callable[[int], None] | None = None  # called with 400 or 431

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_read_bytes = 0  # upper bound: whole reads while headers are incomplete
        self._headers_pending = False
        self._refused = False

    @classmethod
    def with_limit(
        cls, max_header_bytes: int, on_refused: Callable[[int], None] | None = None
    ) -> type[BoundedHeadersProtocol]:
        hook = None if on_refused is None else staticmethod(on_refused)
        return type(
            cls.__name__, (cls,), {"max_header_bytes": max_header_bytes, "on_refused": hook}
        )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._headers_pending and not self._refused:
            self._pending_read_bytes += len(data)
            if self._pending_read_bytes > self.max_header_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_pending = True
        self._pending_read_bytes = 0

    def on_headers_complete(self) -> None:
        # ": " and CRLF per line; uvicorn has collected the URL and headers by now.
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        if size > self.max_header_bytes:
            self._refused = True
            # uvicorn catches the parser's error and calls send_400_response, which answers 431
            # below; raising here stops the parser before uvicorn's own callback starts the app.
            raise HeadersTooLarge
        self._headers_pending = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn logs "Invalid HTTP request received." before it gets here; the answer is ours.
        if self._refused:
            self._refuse()
        else:
            self._answer(400, "malformed HTTP request (request line, headers or body framing)")

    def _refuse(self) -> None:
        self._headers_pending = False
        self._refused = True
        self._answer(431, f"request headers exceed the limit of {self.max_header_bytes} bytes")

    def _answer(self, status: int, detail: str) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not self._headers_pending:
            # A broken body of a request the app is handling: the app sees a disconnect, and
            # the metrics middleware counts this status for it (one request, one count).
            cycle.scope.setdefault("state", {})[REFUSED_STATUS] = status
        elif self.on_refused is not None:
            self.on_refused(status)
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
