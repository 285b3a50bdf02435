"""``POST /predict``: an image (multipart form or raw ``image/*`` body) or a JSON batch."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute

from service import jsonio
from service.answer import json_answer
from service.decoding import RETRY_AFTER_SECONDS, DecodeBusy, ImageDecoder
from service.auth import PREDICT
from service.deps import container_of, first_headers
from service.inference import LoadedModel, Prediction
from service.metrics import Metrics
from service.preprocessing import ImageRejected
from service.schemas import (
    BatchPredictResponse,
    BatchValueResponse,
    PredictResponse,
    ValueResponse,
)
from service.settings import Settings
from service.uploads import read_body, read_first_file

router = APIRouter(tags=["predict"])

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "image/tiff")
# A form part may be labelled generically; the decoder, not the label, decides.
_GENERIC_TYPES = ("", "application/octet-stream")

JSON_BODY: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Instances"}}
# What an image model takes besides JSON; the spec shows these only while the model being served
# has a card with preprocessing (``service/main.py``).
IMAGE_BODIES: dict[str, Any] = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            # minLength: an empty file is refused (422 "empty image"); the schema says so.
            "properties": {"file": {"type": "string", "format": "binary", "minLength": 1}},
        },
        "encoding": {"file": {"contentType": ", ".join(_IMAGE_TYPES)}},
    },
    **{t: {"schema": {"type": "string", "format": "binary", "minLength": 1}} for t in _IMAGE_TYPES},
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": JSON_BODY, **IMAGE_BODIES},
}


def _expected_shape(model: LoadedModel, max_rows: int) -> str:
    return (
        f'expected {{"instances": [[{model.n_features} numbers], ...]}} with 1 to {max_rows} rows'
    )


@router.post(
    "/predict",
    summary="Predict from an image upload or a batch of feature vectors",
    response_model=PredictResponse | BatchPredictResponse | ValueResponse | BatchValueResponse,
    responses={
        401: {"description": "missing or invalid bearer token"},
        403: {"description": "token lacks scope 'predict'"},
        413: {"description": "body or image dimensions over the limit"},
        415: {"description": "a body this model does not take (see its card)"},
        422: {"description": "not a decodable image, or JSON of the wrong shape"},
        503: {
            "description": "no model loaded yet, or big-image decoding busy (see Retry-After)",
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait (when decoding is busy)",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def predict(request: Request) -> Response:
    # The hottest route checks access and takes the store itself instead of through
    # ``Depends``: each FastAPI dependency is a recursive solve per request, measurable next to
    # a ~0.5 ms prediction (bench/service.py). The check is the one ``require_predict`` does,
    # with its two headers read in one pass over the raw list (no ``Headers`` object).
    authorization, content_type = first_headers(
        request.scope["headers"], b"authorization", b"content-type"
    )
    container = container_of(request)
    await container.authenticator().authorize(authorization, PREDICT)
    store = container.model_store()
    # Read once: a swap during this request does not change the model it is answered with.
    model = store.current
    if model is None:
        raise HTTPException(
            503, detail="no model loaded yet", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    settings = store.settings
    content_type = content_type or ""
    mime = content_type.partition(";")[0].strip().lower()
    if mime == "application/json":
        body = await read_body(request, settings.max_upload_bytes)
        rows = _instances(body, model, settings.max_batch_rows)
        prediction = await _predict(model, rows, "json", store.metrics, settings)
        return json_answer(_batch_payload(prediction, model))
    if model.preprocessor is None:
        # The wording follows the card: this model has no image conversion, so no upload fits.
        raise HTTPException(
            415,
            detail="this model takes JSON rows, not uploads (its card has no image"
            f" preprocessing): send Content-Type application/json,"
            f" {_expected_shape(model, settings.max_batch_rows)}",
        )
    data = await _image_bytes(request, mime, content_type, settings.max_upload_bytes)
    rows = await _image_row(model, data, request.app.state.decoder)
    prediction = await _predict(model, rows, "image", store.metrics, settings)
    return json_answer(_single_payload(prediction, model))


PREDICT_ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is predict)


async def _image_bytes(request: Request, mime: str, content_type: str, limit: int) -> bytes:
    """The uploaded image: a multipart form's file part, or a raw ``image/*`` body."""
    if mime == "multipart/form-data":
        part = await read_first_file(request, content_type, limit)
        if part.content_type not in _GENERIC_TYPES and not part.content_type.startswith("image/"):
            raise HTTPException(
                415,
                detail=f"form file is {part.content_type!r}; this model takes an image"
                " (PNG, JPEG, GIF, BMP, WebP, TIFF) or JSON rows",
            )
        return part.data
    if mime.startswith("image/") or mime == "application/octet-stream":
        return await read_body(request, limit)
    raise HTTPException(
        415,
        detail="this model takes an image (multipart/form-data field 'file', or an image/* body)"
        " or JSON rows (application/json)",
    )


async def _image_row(
    model: LoadedModel, data: bytes, decoder: ImageDecoder
) -> npt.NDArray[np.float32]:
    assert model.preprocessor is not None  # checked by the caller, before the body was read
    if not data:
        raise HTTPException(422, detail="empty image")
    try:
        return await decoder.decode(model.preprocessor, data)
    except ImageRejected as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from None
    except DecodeBusy as exc:
        raise HTTPException(
            503,
            detail="too many large images are being decoded; retry shortly",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None


def _instances(body: bytes, model: LoadedModel, max_rows: int) -> npt.NDArray[np.float32]:
    def refuse(reason: str) -> HTTPException:
        # The message is built only for a refusal: the f-string costs on every good request.
        expected = _expected_shape(model, max_rows)
        return HTTPException(422, detail=f"{reason}; {expected}" if reason else expected)

    try:
        document = jsonio.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise refuse("body is not valid JSON") from None
    except RecursionError:
        raise refuse("JSON nested too deeply") from None
    rows = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= max_rows:
        raise refuse("")
    width = model.n_features
    for number, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise refuse(f"row {number} has {got}")
        for value in row:
            # bool is an int subclass; "1.5" would silently convert in numpy.
            if type(value) is not float and type(value) is not int:
                raise refuse(f"row {number} holds {type(value).__name__}")
    try:
        with np.errstate(over="ignore"):  # out-of-range floats become inf, refused just below
            array = np.asarray(rows, dtype=np.float32)
    except OverflowError:
        raise refuse("a value is out of float32 range") from None
    if not np.isfinite(array).all():
        raise refuse("values must be finite numbers")
    return array


async def _predict(
    model: LoadedModel,
    rows: npt.NDArray[np.float32],
    kind: str,
    metrics: Metrics,
    settings: Settings,
) -> Prediction:
    if len(rows) <= settings.inline_inference_max_rows:
        # One row runs in tens of microseconds: less than a hop to the thread pool and back.
        prediction = model.predict(rows)
    else:
        prediction = await anyio.to_thread.run_sync(model.predict, rows)
    # ONNX Runtime's run() alone (timed in ``LoadedModel.predict``), as the metric says.
    metrics.observe_inference(kind, prediction.seconds)
    if prediction.values is not None:
        # A regressor: the values feed the predicted-value histogram and the output drift.
        model.drift.observe_values(prediction.values, rows)
        return prediction
    for label in prediction.labels:
        metrics.count_label(label)
    model.drift.observe(prediction.class_indices, rows)
    return prediction


def _value(row: npt.NDArray[np.float32]) -> float | None | list[float | None]:
    """One row's value (a list when the card's output has several per row), written as the
    shortest decimal that is the same float32 (``202.25835``, not ``202.2583465576172``); a
    non-finite value (a model overflowing on extreme input) is ``null``, never invalid JSON."""
    clean: list[float | None] = [float(str(v)) if np.isfinite(v) else None for v in row]
    if len(clean) == 1:
        return clean[0]
    return clean


def _rounded(probabilities: npt.NDArray[np.float32]) -> list[list[float]]:
    # NaN or inf (a model overflowing on extreme but finite input) must not become invalid JSON.
    if not np.isfinite(probabilities).all():
        probabilities = np.nan_to_num(probabilities, nan=0.0, posinf=1.0, neginf=0.0)
    return [[round(p, 6) for p in row] for row in probabilities.tolist()]


def _single_payload(prediction: Prediction, model: LoadedModel) -> dict[str, Any]:
    if prediction.values is not None:
        return {"value": _value(prediction.values[0]), "model_tag": model.tag}
    return {
        "label": prediction.labels[0],
        "probabilities": dict(zip(model.card.labels, _rounded(prediction.probabilities[:1])[0])),
        "model_tag": model.tag,
    }


def _batch_payload(prediction: Prediction, model: LoadedModel) -> dict[str, Any]:
    if prediction.values is not None:
        return {
            "predictions": [{"value": _value(row)} for row in prediction.values],
            "model_tag": model.tag,
        }
    labels = model.card.labels
    return {
        "predictions": [
            {"label": label, "probabilities": dict(zip(labels, row))}
            for label, row in zip(prediction.labels, _rounded(prediction.probabilities))
        ],
        "model_tag": model.tag,
    }
