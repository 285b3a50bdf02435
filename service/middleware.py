"""Request metrics and the body limit as pure ASGI middleware (``BaseHTTPMiddleware`` costs far
more per call)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http_protocol import REFUSED_STATUS
from service.metrics import Metrics
from service.uploads import TooLarge, too_large_message


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # to name the route of a request refused before routing (413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0  # no response started yet

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client went away mid-body (an aborted upload, or a body the server's parser
            # refused and already answered 400 to): nobody is left to answer, and it is not a
            # server error. Counted as nginx's 499 "client closed request", never a 500 that
            # pages on-call (High5xxRatio), and not logged as "Exception in ASGI application".
            status = status or scope.get("state", {}).get(REFUSED_STATUS, 499)
        finally:
            status = status or 500  # an exception before any response: Starlette answers 500
            route = scope.get("route") or self._match(scope)
            # The route template, never the raw path: label cardinality stays bounded.
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                name, scope["method"], status, time.perf_counter() - started
            )

    def _match(self, scope: Scope) -> object:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return route
        return None


class BodyLimitMiddleware:
    """One 413 for every route, with the service's own message and JSON shape.

    A declared ``Content-Length`` over the limit is answered before the app runs (before the
    token check: nothing is learnt from it); a chunked body is cut off as it crosses the limit,
    the same ``TooLarge`` that ``/predict`` raises while reading. It sits inside
    ``MetricsMiddleware``, so the metrics count the 413 the client got.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                # The Open Inference Protocol's error body is {"error": ...}.
                key = "error" if scope["path"].startswith("/v2") else "detail"
                response = JSONResponse({key: too_large_message(self.limit)}, 413)
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)  # within the limit: the server enforces it
            return
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.limit:
                    raise TooLarge(self.limit)
            return message

        await self.app(scope, counted, send)
