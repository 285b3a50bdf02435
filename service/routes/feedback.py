"""``POST /feedback``: ground truth for predictions already made, counted per model tag."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from machinery.modelcard import ModelCard, ValueOutput
from service.auth import FEEDBACK
from service.deps import container_of
from service.feedback import FLOAT32_MAX, SHAPE, FeedbackBook
from service.settings import TAG_PATTERN
from service.uploads import read_body

router = APIRouter(tags=["feedback"])

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}},
}


def feedback_schema(card: ModelCard | None, max_items: int) -> dict[str, Any]:
    """``/feedback``'s body as the served model takes it: its classes (or a regressor's
    numbers) for ``predicted`` and ``actual``, and 1 to ``max_items`` items. Items for other
    published tags are checked against their own cards."""
    value: dict[str, Any]
    if card is None:
        value = {"oneOf": [{"type": "string"}, _number(), {"type": "array", "items": _number()}]}
    elif isinstance(card.output, ValueOutput):
        width = card.output.width
        row = {"type": "array", "items": _number(), "minItems": width, "maxItems": width}
        value = _number() if width == 1 else row
    else:
        value = {"type": "string", "enum": list(card.labels)}
    item = {
        "type": "object",
        "required": ["model_tag", "predicted", "actual"],
        "additionalProperties": False,
        "properties": {
            "model_tag": {
                "type": "string",
                "pattern": TAG_PATTERN,
                "description": "model_tag of the /predict answer: a published tag",
            },
            "predicted": {**value, "description": "what the service answered"},
            "actual": {**value, "description": "the true class or value"},
        },
    }
    batch = {"type": "array", "items": item, "minItems": 1, "maxItems": max_items}
    return {"oneOf": [item, batch]}


def _number() -> dict[str, Any]:
    # float32's range: larger magnitudes are refused, as /predict's inputs are.
    return {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}


@router.post(
    "/feedback",
    summary="Report the true answers for predictions (one item or a list); counted per tag",
    responses={
        200: {"description": "all items counted: how many, per tag"},
        401: {"description": "missing or invalid bearer token"},
        403: {"description": "token lacks scope 'feedback'"},
        404: {"description": "a model_tag that is not published"},
        413: {"description": "body over the limit"},
        422: {"description": "malformed item, unknown class, non-finite value, too many items"},
        503: {"description": "registry unavailable to check a new tag"},
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def feedback(request: Request) -> JSONResponse:
    container = container_of(request)
    await container.authenticator().authorize(request.headers.get("authorization"), FEEDBACK)
    settings = container.settings()
    body = await read_body(request, settings.max_upload_bytes)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(422, detail=f"body is not valid JSON; expected {SHAPE}") from None
    except RecursionError:
        raise HTTPException(422, detail=f"JSON nested too deeply; expected {SHAPE}") from None
    book: FeedbackBook = container.feedback()
    return JSONResponse(await book.accept(document, settings.max_feedback_items))
