"""Probes and metrics: open to everyone (no token), cheap, never touching the registry."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import StoreDep, container_of
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health, summary="The process answers")
async def live() -> Health:
    return Health(status="live")


@router.get(
    "/health/ready",
    response_model=Health,
    summary="Ready only while a model is loaded",
    responses={503: {"model": Health, "description": "no model loaded"}},
)
async def ready(store: StoreDep) -> Response:
    model = store.current
    if model is None:
        return JSONResponse({"status": "not ready", "model_tag": None}, status_code=503)
    return JSONResponse({"status": "ready", "model_tag": model.tag})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = container_of(request).metrics().registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
