"""Whether the model itself changed against the baseline: another name, task or labels.

A fork's first merge request diffs a new model (wine, a regressor) against the template's digits
classifier. Its accuracy is then no better or worse than the old one's, the old model's
per-class rows have nothing to compare with, and its params are another estimator's: the report
says the model changed, shows the new figures unjudged and folds one-sided rows away.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from machinery.modelcard import CARD_FILENAME, ModelCard
from machinery.report.diff import DiffRow

CARD_PATH = f"models/{CARD_FILENAME}"
# Past this many labels a list is cut: the count says the rest.
SHOWN_LABELS = 5
_READ = "import sys, dvc.api; sys.stdout.write(dvc.api.read(sys.argv[1], rev=sys.argv[2]))"


@dataclass(frozen=True)
class Difference:
    field: str  # name, task or labels
    old: str
    new: str


@dataclass(frozen=True)
class ModelChange:
    differences: list[Difference]

    def fields(self) -> str:
        return ", ".join(d.field for d in self.differences)


def baseline_card(rev: str, path: str = CARD_PATH) -> dict[str, Any] | None:
    """The card as ``rev`` has it (git or DVC-tracked, read by DVC as ``metrics diff`` reads
    metrics); None when that revision has none or it cannot be read (then nothing is said)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _READ, path, rev], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:  # a remote that does not answer: no claim either way
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _labels(labels: Any) -> str:
    if not isinstance(labels, list) or not labels:
        return "none"
    shown = ", ".join(str(label) for label in labels[:SHOWN_LABELS])
    return shown + (f", … ({len(labels)} labels)" if len(labels) > SHOWN_LABELS else "")


def compare(old: dict[str, Any] | None, new: ModelCard) -> ModelChange | None:
    """None when there is no old card or it names the same model (a retrained one)."""
    if old is None:
        return None
    # A card from before schema 2 has no task: it could only be a classifier.
    old_task = str(old.get("task") or "classification")
    pairs = [
        ("name", str(old.get("name", "")), new.name),
        ("task", old_task, new.task),
        ("labels", _labels(old.get("labels")), _labels(new.labels)),
    ]
    differences = [Difference(f, o, n) for f, o, n in pairs if o != n]
    return ModelChange(differences) if differences else None


def model_change(rev: str, new: ModelCard) -> ModelChange | None:
    return compare(baseline_card(rev), new)


def two_sided(rows: list[DiffRow]) -> list[DiffRow]:
    """Rows with a value on both sides (unchanged ones included: the model is another one)."""
    return [row for row in rows if row.old is not None and row.new is not None]


def one_sided(rows: list[DiffRow]) -> list[DiffRow]:
    """Rows that exist on one side only: the old model's classes, the other estimator's params."""
    return [row for row in rows if row.old is None or row.new is None]
