"""A file's sha256 and a YAML mapping: what start-up-sensitive commands read, without pydantic.

``mlops offload`` with transport ``none`` runs before every local training; importing pydantic
(through ``machinery.modelcard`` or ``machinery.params``) just for these two would cost it
~40 ms of its ~0.15 s start (``python -X importtime``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from machinery.errors import UserError


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; a missing or malformed file is one line."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level")
    return data
