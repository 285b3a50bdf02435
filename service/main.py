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
from PIL import Image

from service.container import Container
from service.middleware import MetricsMiddleware
from service.routes import health, models, predict
from service.schemas import Instances
from service.settings import Settings

_SECURED = {"/predict", "/get_experiment_metas", "/replace_ml_model"}


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """Build the app; bad access configuration raises ``AuthConfigError`` here, before serving."""
    container = container or Container()
    if settings is not None:
        container.settings.override(settings)
    settings = container.settings()
    logging.getLogger("service").setLevel(settings.log_level.upper())
    # Pillow's own bomb guard, in step with ours (we also check dimensions before decoding).
    Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
    container.authenticator()  # refuse to start with an unsafe access configuration
    store = container.model_store()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            await store.stop()

    app = FastAPI(
        title="Inference service",
        summary="Predictions from the model the registry alias points at, with hot swap.",
        version="1.0.0",
        lifespan=lifespan,
        # Every route, not only /predict (which enforces the same limit itself, with its own
        # message): no JSON body on any endpoint is buffered past this size.
        max_body_size=settings.max_upload_bytes,
    )
    app.state.container = container
    app.include_router(predict.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.add_middleware(MetricsMiddleware, metrics=container.metrics())
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec plus the bearer scheme on the routes that check a token."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token with scope 'predict' (or 'admin' for /replace_ml_model).",
    }
    schema["components"].setdefault("schemas", {}).setdefault(
        "Instances", Instances.model_json_schema()
    )
    for path, operations in schema.get("paths", {}).items():
        if path in _SECURED:
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema
