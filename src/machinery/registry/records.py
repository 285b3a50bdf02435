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


class AliasRecord(BaseModel):
    """``aliases/<alias>.json`` and each line of ``aliases/<alias>.history.jsonl``."""

    alias: str
    tag: str
    moved_at: datetime
    moved_by: str
    previous_tag: str | None
