"""The cancel marker an interrupted offload leaves for a submission still on its way: made only
while that run's staging dir exists (the submission removes both), and a marker whose staging
dir is gone is pruned. A SIGTERM before anything was staged, or after the staging dir became
the run dir, used to leave ``runs/.<stage>-<id>.<nonce>.cancel`` behind for good. The rendered
shell runs here with bash, as the login node runs it; ``scancel`` is a stub on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from machinery.slurm.remote import render_cancel
from machinery.slurm.script import Layout, render_prune


def run(script: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "scancel"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], env=env, check=True)


def test_a_cancel_before_staging_or_after_submission_leaves_no_marker(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "n1")
    run(render_cancel(None, layout, 120), tmp_path)
    assert not Path(layout.staging_dir + ".cancel").exists()  # nothing staged yet
    Path(layout.run_dir).mkdir(parents=True)  # staged and submitted: the dir became the run dir
    run(render_cancel(None, layout, 120), tmp_path)
    assert sorted(p.name for p in Path(layout.runs).iterdir()) == [".lock", layout.key]


def test_a_cancel_while_staged_leaves_the_marker_the_submission_reads(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "n2")
    Path(layout.staging_dir).mkdir(parents=True)
    run(render_cancel(None, layout, 120), tmp_path)
    assert Path(layout.staging_dir + ".cancel").is_file()


def test_a_marker_without_its_staging_dir_is_pruned(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "mlops"), "train-0123456789abcdef", "n3")
    runs = Path(layout.runs)
    runs.mkdir(parents=True)
    orphan = runs / ".train-0123456789abcdef.old.cancel"
    orphan.touch()
    live = Path(layout.staging_dir + ".cancel")
    Path(layout.staging_dir).mkdir()
    live.touch()
    run(render_prune(layout, 1.0), tmp_path)
    assert not orphan.exists()
    assert live.exists() and Path(layout.staging_dir).is_dir()  # a live one stays


def test_a_requeue_never_shows_squeues_none_as_its_reason() -> None:
    """squeue says ``None`` when a job has no reason; ``requeued (None)`` told nobody anything."""
    from machinery.slurm.polling import Watcher

    said: list[str] = []
    watcher = Watcher.__new__(Watcher)  # the state machine alone: no transport, no cluster
    watcher.job_id, watcher.say, watcher.node = "7", said.append, ""
    watcher.requeues, watcher._last, watcher._started = 0, ("", ""), False
    for base, reason in (("RUNNING", "None"), ("PENDING", "None"), ("RUNNING", "None")):
        watcher._state_change(base, reason, "n1")
    assert watcher.requeues == 1
    assert "job 7 requeued (requeue)" in said, said
    assert not [line for line in said if "None" in line], said


def test_transport_none_names_a_declared_out_the_command_did_not_produce(
    tmp_path: Path,
) -> None:
    """A cluster job exits 2 with "did not produce"; running here exited 0 with COMPLETED."""
    import sys

    from tests.slurm.conftest import make_project

    project = make_project(tmp_path / "p", "touch elsewhere")
    argv = [sys.executable, "-m", "machinery.cli", "offload", "--transport", "none"]
    proc = subprocess.run(
        [*argv, project.stage, "--", *project.cmd],
        cwd=project.path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"error: stage {project.stage} ran here, but did not produce out", proc.stderr
    assert "Traceback" not in proc.stderr
