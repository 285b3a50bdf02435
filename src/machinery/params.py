"""Read one section of ``params.yaml`` into a typed model, with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from machinery.errors import UserError
from machinery.files import load_yaml

M = TypeVar("M", bound=BaseModel)

PARAMS_FILE = Path("params.yaml")


def load_section(section: str, model: type[M], path: Path = PARAMS_FILE) -> M:
    """Validate ``path``'s ``section`` against ``model``; a bad key is one line naming it."""
    data = load_yaml(path)
    if section not in data:
        raise UserError(f"{path}: missing section '{section}'")
    try:
        return model.model_validate(data[section] or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join([section, *(str(p) for p in first["loc"])])
        raise UserError(f"{path}: {key}: {first['msg']}") from None
