"""Bring the project's imported data up to date before a retrain reproduces the pipeline.

A fork whose labelled data grows outside Git tracks it as an import: ``dvc import-url
s3://bucket/labelled/ data/incoming`` (``--version-aware`` on a versioned bucket) writes
``data/incoming.dvc``, and a stage lists ``data/incoming`` as a dependency. Imports are frozen:
``dvc repro`` never looks at the source again, only ``dvc update`` does. So a retrain run
(``MLOPS_RETRAIN_REASON`` set: ``make pipeline`` / ``make restore``) first runs ``dvc update``
on every import ``.dvc`` file Git tracks; new rows under the prefix change the import's hash,
the stages that depend on it run again, and ``mlops retrain publish`` sees a new model. With
nothing new, ``dvc update`` changes nothing and the run ends at "No new model".
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from machinery.errors import UserError


@dataclass(frozen=True)
class Updated:
    files: list[str]  # every import .dvc file Git tracks
    changed: list[str]  # those whose source had new or changed data


def import_files(root: Path) -> list[str]:
    """The ``.dvc`` files Git tracks that are imports (a ``deps`` entry: ``import-url`` or
    ``import``); a plain ``dvc add`` file has no deps and nothing to update."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.dvc"], cwd=root, capture_output=True, text=True
    )
    if listed.returncode != 0:
        raise UserError(f"{root}: not a git work tree ({listed.stderr.strip()})")
    found = []
    for rel in sorted(filter(None, listed.stdout.split("\0"))):
        try:
            content = yaml.safe_load((root / rel).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{rel}: not a readable .dvc file ({exc})") from None
        if isinstance(content, dict) and content.get("deps"):
            found.append(rel)
    return found


def update_imports(root: Path, dvc: str = "dvc") -> Updated:
    files = import_files(root)
    if not files:
        return Updated([], [])
    before = {rel: (root / rel).read_bytes() for rel in files}
    proc = subprocess.run([dvc, "update", *files], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit {proc.returncode}"
        raise UserError(f"dvc update {' '.join(files)}: {last}")
    changed = [rel for rel in files if (root / rel).read_bytes() != before[rel]]
    return Updated(files, changed)


def describe(updated: Updated) -> str:
    if not updated.files:
        return "imports: none tracked (no import .dvc files): the data stage reads what it has"
    if not updated.changed:
        return f"imports: {', '.join(updated.files)} unchanged: no new data at the source"
    return f"imports: updated {', '.join(updated.changed)} (new data at the source)"
