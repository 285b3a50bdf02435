"""The prediction routes called straight from the middleware stack, past FastAPI's per-request
machinery.

``/predict`` and the V2 ``infer`` routes take only the ``Request`` and their path parameters
and return a ``Response``; nothing of what FastAPI does per request between the middlewares
and such an endpoint is used by them: its ``ExceptionMiddleware`` and ``AsyncExitStack``
middleware, the router's walk over every route, and its request handler (dependency solving,
telemetry probes, two exit stacks per request). Profiled under ``wrk`` (``bench/profile_server.py``)
that machinery was about as much time as the endpoint's own work, and it was the gap to a
hand-written FastAPI app, which pays it too but does far less besides (docs/service.md,
"Benchmark"). So these routes are matched here and their endpoint awaited directly; an
``HTTPException`` becomes FastAPI's own error answer (``http_exception_handler``), anything else
propagates (the metrics count a 500, uvicorn logs it and answers 500: the service's middlewares
sit outside Starlette's ``ServerErrorMiddleware``, ``service.main.ServiceApp``).

The routes stay on the app as they were: the OpenAPI spec, and every request this does not
take (another method: 405, a trailing slash: 307), still go through FastAPI. An endpoint that
gains a dependency or a non-path parameter is refused at start-up here, since calling it
directly would skip it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import HTTPException
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[..., Awaitable[Response]]


class HotRoutes:
    """Pure ASGI: ``routes`` (POST routes of the app) answered without FastAPI's routing."""

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]) -> None:
        self.app = app
        for route in routes:
            _check_direct(route)
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        for route in self.routes:
            found = route.path_regex.match(path)
            if found is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        params: dict[str, Any] = found.groupdict()
        scope["route"] = route  # the metrics label it by its template, as FastAPI's router does
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request, **params)
        except HTTPException as exc:
            response = await http_exception_handler(request, exc)
        await response(scope, receive, send)


def _check_direct(route: APIRoute) -> None:
    """The endpoint must be callable as ``endpoint(request, **path_params)``."""
    dependant = route.dependant
    extra = (
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.dependencies
        or dependant.background_tasks_param_name
        or dependant.response_param_name
    )
    if (
        extra
        or dependant.request_param_name != "request"
        or route.methods != {"POST"}
        or any(route.param_convertors[p.name].regex != "[^/]+" for p in dependant.path_params)
    ):
        raise TypeError(
            f"{route.path} cannot be served directly: its endpoint must take only 'request'"
            " and string path parameters, and answer POST alone (service/hot_routes.py)"
        )
