"""Open Inference Protocol (KServe "V2") REST routes beside ``/predict``.

``{name}`` is the served card's ``name`` and ``{version}`` the experiment tag being served: a
request for another name or version is a 404 naming what is served, never an answer from
another model. Each request reads the served model once, so during a hot swap every answer's
``model_version`` is the tag that computed it. Access (scope ``predict`` on ``/v2/models/…``),
body limits, inference metrics and drift are ``/predict``'s own code paths; ``/v2`` and
``/v2/health/*`` are open like ``/health/*``. Errors are the protocol's ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from service.decoding import RETRY_AFTER_SECONDS
from service.answer import Answer
from service.auth import PREDICT
from service.deps import container_of, first_headers, store_of
from service.inference import LoadedModel
from service.model_store import ModelStore
from service.routes.predict import _predict
from service.uploads import read_body
from service.v2_codec import (
    DATATYPES,
    HEADER_LENGTH,
    V2Error,
    encode_response,
    input_shape,
    output_specs,
)
from service.v2_codec import parse_request

router = APIRouter(tags=["open inference protocol (V2)"])
SERVER_NAME = "mlops-inference"
SERVER_VERSION = "1.0.0"
EXTENSIONS = ["binary_tensor_data"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}},
    }
    for status, text in (
        (400, "the request does not fit the model's input"),
        (401, "missing or invalid bearer token"),
        (403, "token lacks scope 'predict'"),
        (404, "no such model name or version here"),
        (413, "request body over the limit"),
        (503, "no model loaded yet"),
    )
}
V2_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
INFER_BODY: dict[str, Any] = {
    "required": True,
    # Triton's binary tensor extension (JSON header of Inference-Header-Content-Length bytes,
    # then the inputs' raw bytes) is served too; it has no OpenAPI form that a generator could
    # fill correctly, so only the JSON form is described (docs/service.md shows both).
    "description": "An Open Inference Protocol inference request (JSON), or Triton's binary"
    " tensor extension: the JSON header, its length in Inference-Header-Content-Length, then the"
    " inputs' bytes.",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/V2InferenceRequest"}},
    },
}


_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs: JSON, or with binary outputs (asked with 'binary_data' or"
        " 'binary_data_output') the JSON header (Inference-Header-Content-Length bytes) and"
        " their raw bytes.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **_ERRORS,
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _from_http(exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def _served(store: ModelStore, name: str, version: str | None) -> LoadedModel:
    model = store.current
    if model is None:
        raise V2Error(503, "no model loaded yet")
    if name != model.card.name:
        raise V2Error(404, f"no model {name!r} here; this server serves {model.card.name!r}")
    if version is not None and version != model.tag:
        raise V2Error(
            404, f"model {name!r} has no version {version!r} here; it serves {model.tag!r}"
        )
    return model


async def _authorized_model(
    request: Request, name: str, version: str | None, authorization: str | None
) -> LoadedModel | JSONResponse:
    """The served model after the ``predict`` scope check of the ``Authorization`` header
    (None when absent; read by the caller, with the other headers it needs)."""
    try:
        await container_of(request).authenticator().authorize(authorization, PREDICT)
        return _served(store_of(request), name, version)
    except HTTPException as exc:
        return _from_http(exc)
    except V2Error as exc:
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
        return _error(exc.status, exc.message, retry)


@router.get("/v2", summary="Server metadata (Open Inference Protocol)")
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}


@router.get("/v2/health/live", summary="The process answers (V2)")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/v2/health/ready",
    summary="Ready only while a model is loaded (V2)",
    responses={503: {"description": "no model loaded"}},
)
async def server_ready(request: Request) -> JSONResponse:
    ready = store_of(request).current is not None
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _metadata(model: LoadedModel) -> dict[str, Any]:
    card = model.card
    return {
        "name": card.name,
        "versions": [model.tag],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {
                "name": card.input.name,
                "datatype": DATATYPES[card.input.dtype][0],
                "shape": input_shape(card),
            }
        ],
        "outputs": [
            {"name": name, "datatype": datatype, "shape": shape}
            for name, datatype, shape in output_specs(card)
        ],
    }


@router.get("/v2/models/{name}", summary="Model metadata (V2)", responses=_ERRORS)
async def model_metadata(request: Request, name: str) -> Response:
    return await _metadata_response(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}", summary="Model version metadata (V2)", responses=_ERRORS
)
async def model_version_metadata(request: Request, name: str, version: str) -> Response:
    return await _metadata_response(request, name, version)


async def _metadata_response(request: Request, name: str, version: str | None) -> Response:
    model = await _authorized_model(request, name, version, request.headers.get("authorization"))
    if isinstance(model, JSONResponse):
        return model
    return JSONResponse(_metadata(model))


@router.get("/v2/models/{name}/ready", summary="Model ready (V2)", responses=_ERRORS)
async def model_ready(request: Request, name: str) -> Response:
    return await _ready_response(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    summary="Model version ready (V2)",
    responses=_ERRORS,
)
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return await _ready_response(request, name, version)


async def _ready_response(request: Request, name: str, version: str | None) -> Response:
    model = await _authorized_model(request, name, version, request.headers.get("authorization"))
    if isinstance(model, JSONResponse):
        return model
    return JSONResponse({"name": model.card.name, "ready": True})


@router.post(
    "/v2/models/{name}/infer",
    summary="Inference (V2, JSON or Triton binary tensors)",
    responses=_INFER_RESPONSES,
    openapi_extra={"requestBody": INFER_BODY},
)
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    summary="Inference on a version (V2, JSON or Triton binary tensors)",
    responses=_INFER_RESPONSES,
    openapi_extra={"requestBody": INFER_BODY},
)
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


_HEADER_LENGTH = HEADER_LENGTH.encode()

INFER_ROUTES = [
    route
    for route in router.routes
    if isinstance(route, APIRoute) and route.endpoint in (infer, infer_version)
]


async def _infer(request: Request, name: str, version: str | None) -> Response:
    # The token first, then the model, then the body: an anonymous caller learns nothing.
    authorization, binary_header_length = first_headers(
        request.scope["headers"], b"authorization", _HEADER_LENGTH
    )
    model = await _authorized_model(request, name, version, authorization)
    if isinstance(model, JSONResponse):
        return model
    store = store_of(request)
    settings = store.settings
    try:
        body = await read_body(request, settings.max_upload_bytes)
        parsed = parse_request(body, binary_header_length, model.card, settings.max_batch_rows)
    except HTTPException as exc:
        return _from_http(exc)
    except V2Error as exc:
        return _error(exc.status, exc.message)
    prediction = await _predict(model, parsed.rows, "v2", store.metrics, settings)
    card = model.card
    count = len(parsed.rows)
    specs = output_specs(card)
    produced: dict[str, tuple[str, list[int], npt.NDArray[Any] | list[str]]]
    if prediction.values is not None:  # a regressor: its values, rows × the output's width
        if not np.isfinite(prediction.values).all():
            # /predict answers null; a V2 FP32 tensor has no such value, and JSON no NaN.
            return _error(400, "the model's output for this input is not a finite number")
        ((value_name, _, shape),) = specs
        produced = {value_name: ("FP32", [count, *shape[1:]], prediction.values)}
    else:
        probabilities = prediction.probabilities
        if not np.isfinite(probabilities).all():  # JSON has no NaN; as /predict does
            probabilities = np.nan_to_num(probabilities, nan=0.0, posinf=1.0, neginf=0.0)
        (label_name, _, _), (proba_name, _, _) = specs
        produced = {
            label_name: ("BYTES", [count], prediction.labels),
            proba_name: ("FP32", [count, len(card.labels)], probabilities),
        }
    content, header_length = encode_response(
        card.name,
        model.tag,
        parsed.request_id,
        [(name, *produced[name], binary) for name, binary in parsed.outputs.items()],
    )
    if header_length is None:
        return Answer(content)
    return Answer(
        content,
        b"application/octet-stream",
        ((b"inference-header-content-length", str(header_length).encode()),),
    )
