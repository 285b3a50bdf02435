"""Experiments and hot swap: ``GET /get_experiment_metas``, ``POST /replace_ml_model``."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from service.deps import AdminPrincipal, PredictPrincipal, StoreDep
from service.model_store import SwapError
from service.schemas import (
    ExperimentMeta,
    Experiments,
    InvalidExperiment,
    SwapRequest,
    SwapResponse,
)
from service.uploads import read_body

router = APIRouter(tags=["models"])


@router.get(
    "/get_experiment_metas",
    response_model=Experiments,
    summary="Published experiments (newest first) and which one is serving",
    responses={503: {"description": "registry unavailable"}},
)
async def get_experiment_metas(principal: PredictPrincipal, store: StoreDep) -> Experiments:
    try:
        listing = await anyio.to_thread.run_sync(store.experiments)
    except SwapError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from None
    current = store.current
    active = current.tag if current else None
    return Experiments(
        alias=store.settings.model_alias,
        pinned_tag=store.settings.model_tag,
        active_tag=active,
        experiments=[
            ExperimentMeta(
                tag=m.tag,
                commit=m.commit,
                created=m.created,
                metrics=m.metrics,
                params=m.params,
                data_version=m.data_version,
                sha256=m.sha256,
                estimator=m.card.estimator,
                task=m.card.task,
                active=m.tag == active,
            )
            for m in listing.models
        ],
        invalid=[InvalidExperiment(tag=e.tag, error=e.error) for e in listing.invalid],
    )


@router.post(
    "/replace_ml_model",
    response_model=SwapResponse,
    summary="Hot-swap to a published tag and move this deployment's alias to it",
    responses={
        404: {"description": "unknown tag"},
        409: {"description": "this deployment pins a tag"},
        422: {
            "description": "checksum mismatch, unreadable meta.json or not a valid model;"
            " old model still serving"
        },
        503: {"description": "registry unavailable; old model still serving"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SwapRequest"}}
            },
        }
    },
)
async def replace_ml_model(
    request: Request, principal: AdminPrincipal, store: StoreDep
) -> SwapResponse:
    # The body is read and validated here, after the token check (a parameter would be
    # validated first): an anonymous caller learns nothing about the schema.
    body = _swap_request(await read_body(request, store.settings.max_upload_bytes))
    try:
        result = await store.swap(body.tag, by=principal.name)
    except SwapError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from None
    return SwapResponse(
        tag=result.tag,
        previous_tag=result.previous_tag,
        changed=result.changed,
        alias=store.settings.model_alias,
        seconds=round(result.seconds, 4),
    )


def _swap_request(raw: bytes) -> SwapRequest:
    try:
        return SwapRequest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"{where}: {first['msg']}" if where else first["msg"]
        raise HTTPException(
            422, detail=f'expected {{"tag": "<published tag>"}} ({reason})'
        ) from None
