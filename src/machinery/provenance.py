"""Which commit a stage's output comes from, computed so that the same inputs give the same answer.

A model card names the commit it was trained from. ``HEAD`` would be wrong twice over: the usual
flow is "commit the change, ``make run``, commit ``dvc.lock``", so a fresh clone of the second
commit has another ``HEAD`` than the run that wrote the committed lock, and a README-only commit
moves ``HEAD`` without re-running anything. Either way a fresh clone's ``make run`` would write a
card with other bytes than the committed ``dvc.lock`` records.

So the commit is the newest one that changed what the stage depends on, by DVC's own definition
(``dvc.yaml``): the git-tracked files among the ``deps`` of the stage and of every stage upstream
of it, and the values of the ``params`` sections those stages read (a change elsewhere in
``params.yaml`` does not count, as it does not re-run the stage). Uncommitted changes to any of
those give ``<HEAD>+dirty``. The commit's committer time is the reproducible build time
(``SOURCE_DATE_EPOCH``, the reproducible-builds convention), which the card's ``created`` uses.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Provenance:
    commit: str  # a full sha, "<sha>+dirty", or "unknown" outside git
    epoch: int | None  # committer time of ``commit``; None when dirty or unknown

    @property
    def env(self) -> dict[str, str]:
        """What the stage's command gets: ``MLOPS_CODE_COMMIT`` and ``SOURCE_DATE_EPOCH``."""
        env = {"MLOPS_CODE_COMMIT": self.commit}
        if self.epoch is not None:
            env["SOURCE_DATE_EPOCH"] = str(self.epoch)
        return env


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def _stage_inputs(root: Path, stage: str) -> tuple[set[str], set[str]]:
    """Paths among the deps, and params sections, of ``stage`` and every stage upstream of it."""
    stages: dict[str, Any] = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get(
        "stages", {}
    )
    producers = {
        str(out if isinstance(out, str) else next(iter(out))): name
        for name, spec in stages.items()
        for key in ("outs", "metrics", "plots")
        for out in spec.get(key, []) or []
    }
    paths: set[str] = set()
    sections: set[str] = set()
    todo, seen = [stage], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in stages:
            continue
        seen.add(name)
        spec = stages[name]
        for dep in spec.get("deps", []) or []:
            dep = str(dep).rstrip("/")
            upstream = [
                s for out, s in producers.items() if out == dep or out.startswith(dep + "/")
            ]
            if upstream:
                todo.extend(upstream)
            else:
                paths.add(dep)
        for entry in spec.get("params", []) or []:
            if isinstance(entry, str):
                sections.add(entry.split(".")[0])
            elif isinstance(entry, dict):  # {other_params.yaml: [keys]}: the file as a whole
                paths.update(str(f) for f in entry)
    return paths, sections


def _section_values(text: str, sections: set[str]) -> dict[str, Any]:
    data = yaml.safe_load(text) or {}
    return {s: data.get(s) for s in sorted(sections)} if isinstance(data, dict) else {}


def _params_commit(root: Path, sections: set[str], current: dict[str, Any]) -> str | None:
    """The newest commit whose ``params.yaml`` gave ``sections`` their current values."""
    introduced = None
    for commit in _git(root, "log", "--format=%H", "--", PARAMS_FILE).split():
        try:
            text = _git(root, "show", f"{commit}:{PARAMS_FILE}")
        except subprocess.CalledProcessError:  # deleted in that commit
            break
        if _section_values(text, sections) != current:
            break
        introduced = commit
    return introduced


def stage_provenance(stage: str, root: Path = Path(".")) -> Provenance:
    """The commit (and its time) the outputs of ``stage`` come from; see the module docstring."""
    try:
        head = _git(root, "rev-parse", "HEAD").strip()
        paths, sections = _stage_inputs(root, stage)
        # Pathspecs that match no tracked file are harmless to status and log: one call each.
        inputs = sorted(paths)
        if inputs and _git(root, "status", "--porcelain", "--untracked-files=no", "--", *inputs):
            return Provenance(f"{head}+dirty", None)
        candidates = []
        if inputs:
            candidates.append(_git(root, "log", "-1", "--format=%H", "--", *inputs).strip())
        params_path = root / PARAMS_FILE
        if sections and params_path.is_file():
            current = _section_values(params_path.read_text(), sections)
            try:
                committed = _section_values(_git(root, "show", f"HEAD:{PARAMS_FILE}"), sections)
            except subprocess.CalledProcessError:
                committed = None
            if committed != current:
                return Provenance(f"{head}+dirty", None)
            candidates.append(_params_commit(root, sections, current) or "")
        candidates = [c for c in candidates if c]
        if not candidates:
            commit = head
        else:
            # The newest of them in history order (timestamps can lie after a rebase).
            commit = candidates[0]
            for other in candidates[1:]:
                if _git(root, "rev-list", "-1", f"{commit}..{other}").strip():
                    commit = other
        epoch = int(_git(root, "show", "-s", "--format=%ct", commit).strip())
    except (OSError, subprocess.CalledProcessError, yaml.YAMLError):
        return Provenance("unknown", None)
    return Provenance(commit, epoch)


def stage_env(stage: str, root: Path = Path(".")) -> dict[str, str]:
    """The provenance variables for a stage's command: the caller's own ``MLOPS_CODE_COMMIT``
    (and ``SOURCE_DATE_EPOCH``) when it set them, else the stage's provenance."""
    if os.environ.get("MLOPS_CODE_COMMIT"):
        keys = ("MLOPS_CODE_COMMIT", "SOURCE_DATE_EPOCH")
        return {k: os.environ[k] for k in keys if os.environ.get(k)}
    return stage_provenance(stage, root).env
