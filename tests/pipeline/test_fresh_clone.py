"""A fresh clone of the committed state: ``make run`` finds ``dvc.lock`` current and leaves
every tracked file as committed, ``dvc.lock`` included.

So every output must be a function of the stage's inputs: the model's bytes, the data split, the
metrics and plots, and also what records the run. The card names the commit its inputs come
from and that commit's time (``machinery.provenance``, not ``HEAD`` and not the clock), the job
record of a local run holds no timings (they go to the log), and the report prints no generation
time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.workspace import REPO, Workspace, venv_stamp

VENV = Path(sys.executable).parent.parent


def git_clone(dest: Path) -> Workspace:
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    # The card names the last commit that changed code; a shallow history may end before it.
    assert shallow != "true", "this check needs the full git history (CI: fetch depth 0)"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return Workspace(dest)


def pipeline_outputs(ws: Workspace) -> set[Path]:
    outs = set()
    for spec in ws.stages().values():
        for key in ("outs", "metrics", "plots"):
            for entry in spec.get(key, []):
                outs.add(Path(next(iter(entry)) if isinstance(entry, dict) else entry))
    return outs


def stale_part(entry: object, outputs: set[Path]) -> object:
    """What in one ``dvc status`` entry says the lock is stale: anything but outputs (or deps
    that are another stage's outputs) missing from a fresh clone."""
    if not isinstance(entry, dict):
        return entry
    stale = {}
    for kind, changes in entry.items():
        if kind == "changed outs" and set(changes.values()) <= {"deleted", "not in cache"}:
            continue
        if kind == "changed deps":
            changes = {
                path: state
                for path, state in changes.items()
                if not any(
                    Path(path) == out or out in Path(path).parents or Path(path) in out.parents
                    for out in outputs
                )
            }
            if not changes:
                continue
        stale[kind] = changes
    return stale


@pytest.mark.slow
def test_make_run_in_a_fresh_clone_changes_no_tracked_file(tmp_path: Path) -> None:
    clone = git_clone(tmp_path / "clone")
    committed = (clone.path / "dvc.lock").read_text()

    # Nothing but missing outputs: a changed code/data dep, param or command means a stale lock.
    status = yaml.safe_load(clone.dvc("status", "--json").stdout) or {}
    stale = {
        stage: entry
        for stage, entries in status.items()
        for entry in entries
        if stale_part(entry, pipeline_outputs(clone))
    }
    assert not stale, (
        f"the committed dvc.lock is stale: {stale}\n"
        "run `make run` and commit dvc.lock (see docs/pipeline.md)"
    )

    # `make run` as written, on this test's venv (-o: never re-sync it from the clone).
    proc = clone.run("make", "run", f"VENV={VENV}", "-o", str(venv_stamp(VENV)), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    changed = clone.git("status", "--porcelain").stdout.splitlines()
    assert changed == [], (
        f"make run in a fresh clone changed tracked files: {changed}\n"
        + clone.git("diff", "dvc.lock").stdout[-4000:]
    )
    assert (clone.path / "dvc.lock").read_text() == committed


@pytest.mark.slow
def test_make_clean_removes_outputs_and_keeps_tracked_files(workspace: Workspace) -> None:
    assert (workspace.path / "models/model.onnx").is_file()
    workspace.run("make", "clean")
    assert not (workspace.path / "models/model.onnx").exists()
    assert not (workspace.path / "data/prepared").exists()
    deleted = workspace.git("ls-files", "--deleted").stdout.split()
    assert not deleted, f"make clean deleted tracked files: {deleted}"
