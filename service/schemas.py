"""Request and response bodies, as the OpenAPI docs show them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from service.settings import TAG_PATTERN


class Instances(BaseModel):
    instances: list[list[float]] = Field(
        min_length=1,
        description="Rows of feature vectors, each as long as the model's input.",
    )


def instances_schema(n_features: int | None, max_rows: int) -> dict[str, Any]:
    """``Instances`` as the model being served takes it: rows of exactly ``n_features``
    numbers, 1 to ``max_rows`` of them (``/predict`` refuses anything else with a 422)."""
    schema = Instances.model_json_schema()
    rows = schema["properties"]["instances"]
    rows["maxItems"] = max_rows
    if n_features is not None:
        rows["items"].update(minItems=n_features, maxItems=n_features)
        rows["description"] = f"1 to {max_rows} rows of {n_features} finite numbers each."
        rows["examples"] = [[[0.0] * n_features]]
    # float32 is what the model takes: larger magnitudes are refused, not silently inf.
    rows["items"]["items"] = {"type": "number", "minimum": -3.4e38, "maximum": 3.4e38}
    return schema


class PredictResponse(BaseModel):
    label: str
    probabilities: dict[str, float]
    model_tag: str


class RowPrediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class BatchPredictResponse(BaseModel):
    predictions: list[RowPrediction]
    model_tag: str


class ValueResponse(BaseModel):
    """A regression model's answer to an upload: its value (a list when the card's output
    holds several per row; ``null`` if not finite)."""

    value: float | list[float | None] | None
    model_tag: str


class RowValue(BaseModel):
    value: float | list[float | None] | None


class BatchValueResponse(BaseModel):
    predictions: list[RowValue]
    model_tag: str


class ExperimentMeta(BaseModel):
    tag: str
    commit: str
    created: datetime
    metrics: dict[str, Any]
    params: dict[str, Any]
    data_version: str
    sha256: str
    estimator: str
    task: str
    active: bool


class InvalidExperiment(BaseModel):
    """A published tag whose meta.json cannot be read: a swap to it is refused (422)."""

    tag: str
    error: str


class Experiments(BaseModel):
    alias: str
    pinned_tag: str | None
    active_tag: str | None
    experiments: list[ExperimentMeta]
    invalid: list[InvalidExperiment] = []


class SwapRequest(BaseModel):
    tag: str = Field(pattern=TAG_PATTERN, description="A published experiment tag.")


class SwapResponse(BaseModel):
    tag: str
    previous_tag: str | None
    changed: bool
    alias: str
    seconds: float


class Health(BaseModel):
    status: str
    model_tag: str | None = None
