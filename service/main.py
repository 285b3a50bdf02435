"""The app factory: ``create_app()`` builds the container, the routes and the lifespan.

Run it with ``python -m service`` (one uvicorn worker; replicas scale it) or
``uvicorn --factory service.main:create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from service.container import Container
from service.decoding import ImageDecoder
from service.hot_routes import HotRoutes
from service.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.preprocessing import disable_pillow_bomb_guard
from service.routes import feedback, health, models, predict, v2
from service.schemas import SwapRequest, instances_schema
from service.v2_schema import v2_request_schema
from service.settings import Settings

_V2_MODEL_PATHS = {
    path for route in v2.router.routes if (path := getattr(route, "path", "")).startswith("/v2/m")
}
_SECURED = {"/predict", "/get_experiment_metas", "/replace_ml_model", "/feedback"}
_SECURED |= _V2_MODEL_PATHS
_SCOPE_OF = {"/replace_ml_model": "admin", "/feedback": "feedback"}
_WITH_BODY = {"/predict", "/replace_ml_model", "/feedback"}


class ServiceApp(FastAPI):
    """FastAPI with the service's own middlewares outermost.

    FastAPI puts ``ServerErrorMiddleware`` and its telemetry and body-limit middlewares (both
    idle here: telemetry is off, the body limit is the service's own) around the user's
    middlewares; a prediction paid those three calls on every request. Here they wrap only what
    the hot routes pass on (``service/hot_routes.py``). What ``ServerErrorMiddleware`` did for a
    hot route, uvicorn does the same way: an exception before any response is logged
    ("Exception in ASGI application") and answered ``500 Internal Server Error`` (text/plain);
    the metrics middleware, outermost, counts it as a 500 either way.
    """

    def build_middleware_stack(self) -> ASGIApp:
        own, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = own
        for cls, args, kwargs in reversed(own):
            app = cls(app, *args, **kwargs)
        return app


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """Build the app; bad access configuration raises ``AuthConfigError`` here, before serving."""
    container = container or Container()
    if settings is not None:
        container.settings.override(settings)
    settings = container.settings()
    logging.getLogger("service").setLevel(settings.log_level.upper())
    # It logs a warning per malformed form; the client gets that reason in its 422 already.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    # Every image's dimensions are checked on its header, with this service's limit.
    disable_pillow_bomb_guard()
    container.authenticator()  # refuse to start with an unsafe access configuration
    store = container.model_store()
    container.feedback()  # its counters show the served tag from the first scrape
    decoder = ImageDecoder(
        settings.inline_decode_max_pixels,
        settings.decode_pixel_budget,
        settings.decode_processes,
        settings.decode_nice,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            decoder.close()
            await store.stop()

    app = ServiceApp(
        title="Inference service",
        summary="Predictions from the model the registry alias points at, with hot swap.",
        version="1.0.0",
        lifespan=lifespan,
        # The service's telemetry is its Prometheus /metrics. FastAPI's native OpenTelemetry
        # would only act if a provider were configured, yet it asks the three global providers
        # on every request to find out: ~7 µs of a ~0.5 ms prediction (bench/service.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.container = container
    app.state.decoder = decoder
    # The routes go straight onto the app, /predict first, instead of ``include_router``:
    # FastAPI 0.165 matches an included router in two steps (its candidates, then the route)
    # after trying the docs routes, ~18 µs a request (in-process, a tabular /predict: 144 →
    # 125 µs; bench/service.py). The routers only group the routes by module here: no prefix,
    # no router-level dependencies, so nothing of an include is lost.
    routes = [
        *predict.router.routes,
        *v2.router.routes,
        *models.router.routes,
        *feedback.router.routes,
        *health.router.routes,
    ]
    app.router.routes[:0] = routes
    # /predict and V2 infer are awaited straight from the middleware stack (service/hot_routes.py).
    # Added first, so it runs inside the body limit and the metrics, like the router did.
    app.add_middleware(HotRoutes, routes=[predict.PREDICT_ROUTE, *v2.INFER_ROUTES])
    # Every route, not only /predict (which enforces the same limit while it reads): no body on
    # any endpoint is buffered past this size. Added before the metrics, so it runs inside them.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=container.metrics(), routes=routes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec, plus the bearer scheme and its 401/403 on the routes that check a
    token, and ``/predict``'s body as the model being served takes it: the row length and batch
    bounds of ``Instances``, and image uploads only while the card has image preprocessing.
    Rebuilt when the served model's input changes (a swap to another kind of model)."""
    container: Container = app.state.container
    settings = container.settings()
    model = container.model_store().current
    # The V2 routes name the served card and tag: rebuilt on every swap (tags are immutable).
    key = None if model is None else model.tag
    cached: tuple[object, dict[str, Any]] | None = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token with scope 'predict' ('admin' for /replace_ml_model,"
        " 'feedback' or 'admin' for /feedback).",
    }
    n_features = None if model is None else model.n_features
    schemas = schema["components"].setdefault("schemas", {})
    schemas["Instances"] = instances_schema(n_features, settings.max_batch_rows)
    schemas["SwapRequest"] = SwapRequest.model_json_schema()
    schemas["V2Error"] = v2.V2_ERROR_SCHEMA
    schemas["V2InferenceRequest"] = v2_request_schema(model.card if model else None)
    schemas["Feedback"] = feedback.feedback_schema(
        model.card if model else None, settings.max_feedback_items
    )
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path in _SECURED:
                operation["security"] = [{"bearer": []}]
                responses.setdefault("401", {"description": "missing or invalid bearer token"})
                scope = _SCOPE_OF.get(path, "predict")
                responses.setdefault("403", {"description": f"token lacks scope '{scope}'"})
            if path in _WITH_BODY:
                responses.setdefault("400", {"description": "invalid Content-Length header"})
                responses.setdefault("413", {"description": "request body over the limit"})
    if model is not None:
        _served_v2_names(schema, model.card.name, model.tag)
    if model is not None and model.preprocessor is None:
        # This model takes JSON rows only (its card has no image preprocessing).
        operation = schema["paths"]["/predict"]["post"]
        operation["requestBody"] = {
            **operation["requestBody"],  # shared with the route's definition: copy, not edit
            "content": {"application/json": predict.JSON_BODY},
            "description": "JSON rows only: the model being served takes no images.",
        }
    app.state.openapi_cache = (key, schema)
    return schema


def _served_v2_names(schema: dict[str, Any], name: str, tag: str) -> None:
    """The V2 routes' ``{name}`` and ``{version}`` as the served card and tag: any other is a
    documented 404."""
    for path in _V2_MODEL_PATHS:
        for operation in schema["paths"].get(path, {}).values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path":
                    value = name if parameter["name"] == "name" else tag
                    parameter["schema"] = {**parameter["schema"], "enum": [value]}
