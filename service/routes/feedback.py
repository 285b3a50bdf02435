"""``POST /feedback``: ground truth for predictions already made, counted per model tag."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from service.auth import FEEDBACK
from service.deps import container_of
from service.feedback import SHAPE, FeedbackBook
from service.uploads import read_body

router = APIRouter(tags=["feedback"])

ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model_tag", "predicted", "actual"],
    "additionalProperties": False,
    "properties": {
        "model_tag": {"type": "string", "description": "model_tag of the /predict answer"},
        "predicted": {
            "description": "the predicted class (a card label), or a regressor's value(s)",
            "oneOf": [
                {"type": "string"},
                {"type": "number"},
                {"type": "array", "items": {"type": "number"}},
            ],
        },
        "actual": {
            "description": "the true class or value, in the same form",
            "oneOf": [
                {"type": "string"},
                {"type": "number"},
                {"type": "array", "items": {"type": "number"}},
            ],
        },
    },
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"oneOf": [ITEM_SCHEMA, {"type": "array", "items": ITEM_SCHEMA}]},
            "example": [
                {"model_tag": "exp-a", "predicted": "cat", "actual": "cat"},
                {"model_tag": "exp-a", "predicted": "cat", "actual": "dog"},
            ],
        }
    },
}


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
