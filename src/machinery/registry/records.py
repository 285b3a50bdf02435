"""What the registry stores: ``meta.json`` per tag and one record per alias move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from machinery.modelcard import ModelCard


class ModelMeta(BaseModel):
    """``models/<tag>/meta.json``: everything known about one published model."""

    tag: str
    commit: str
    created: datetime
    params: dict[str, Any]
    metrics: dict[str, Any]
    data_version: str
    sha256: str
    card: ModelCard


class InvalidEntry(BaseModel):
    """A tag whose ``meta.json`` is unreadable: listed apart, so one bad entry hides nothing."""

    tag: str
    error: str


class Listing(BaseModel):
    """Every tag whose meta reads (newest first), and the ones that do not."""

    models: list[ModelMeta]
    invalid: list[InvalidEntry]


class AliasRecord(BaseModel):
    """``aliases/<alias>.json`` and each line of ``aliases/<alias>.history.jsonl``."""

    alias: str
    tag: str
    moved_at: datetime
    moved_by: str
    previous_tag: str | None
