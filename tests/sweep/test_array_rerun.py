"""A rerun after some tasks of the array did not complete (FAILED, CANCELLED): as a single
offload submits its job again (tests/slurm/test_no_accounting_cluster.py, PREEMPTED), the sweep
submits one new array over just those points and keeps the others' experiments."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster
from tests.sweep.project import make_sweep_project
from tests.sweep.running import exp_commits, running_sweep, submitted

pytestmark = [pytest.mark.integration]

GRID = ("-S", "train.ridge.alpha=0,1,2", "--max-parallel", "3")


def test_a_rerun_resubmits_only_the_point_whose_task_failed(
    cluster: Cluster, tmp_path: Path
) -> None:
    token = secrets.token_hex(4)
    marker = cluster.home_path(f".mlops-sweep-once-{token}")
    project = make_sweep_project(tmp_path / "p", token, train={"fail_once": f"~/{marker.name}"})
    try:
        first = project.sweep("train", *GRID, env=cluster.env())
        assert first.returncode == 1, first.stderr
        job = submitted([first.stderr])
        record = json.loads((project.path / "reports/sweep.json").read_text())
        failed = [p for p in record["points"] if p["state"] != "COMPLETED"]
        # The first task to start failed (which one is Slurm's choice); the others are kept.
        assert [p["state"] for p in failed] == ["FAILED"], first.stderr
        bad = failed[0]["index"]
        kept = exp_commits(project)
        assert sorted(kept) == sorted(p["name"] for p in record["points"] if p["index"] != bad)

        rerun = project.sweep("train", *GRID, env=cluster.env())
        assert rerun.returncode == 0, rerun.stderr
        new = submitted([rerun.stderr])
        assert new != job
        assert f"array {job} of this identity ended with 1 of 3 point(s) not completed" in (
            rerun.stderr
        )
        assert f"(--array={bad}%3," in rerun.stderr
        # One new task, for that point only: the first array's three and the new one.
        name = f"mlops-{record['identity']}"
        expected = [f"{job}_0", f"{job}_1", f"{job}_2", f"{new}_{bad}"]
        assert cluster.jobs_named(name) == sorted(expected)
        again = json.loads((project.path / "reports/sweep.json").read_text())
        assert all(p["state"] == "COMPLETED" and p["experiment"] for p in again["points"])
        assert again["job_id"] == new and again["resubmitted"] == [bad]
        for p in again["points"]:
            owner = new if p["index"] == bad else job
            assert p["task_id"] == f"{owner}_{p['index']}"
            assert p["resubmits"] == (1 if p["index"] == bad else 0)
        commits = exp_commits(project)
        assert sorted(commits) == sorted(p["name"] for p in again["points"])
        # The completed points' experiments are the same commits: not run or saved again.
        assert {k: commits[k] for k in kept} == kept

        # Every point completed now: a rerun submits nothing.
        third = project.sweep("train", *GRID, env=cluster.env())
        assert third.returncode == 0, third.stderr
        assert "submitted array" not in third.stderr
        assert f"reattaching to array {new}" in third.stderr
        assert cluster.jobs_named(name) == sorted(expected)
    finally:
        marker.unlink(missing_ok=True)


def test_a_rerun_after_a_cancelled_task_resubmits_that_point(
    cluster: Cluster, tmp_path: Path
) -> None:
    token = secrets.token_hex(4)
    marker = cluster.home_path(f".mlops-sweep-hold-{token}")
    project = make_sweep_project(tmp_path / "p", token, train={"hold_once": f"~/{marker.name}"})
    argv = ("train", "-S", "train.ridge.alpha=0,1", "--max-parallel", "2")
    with running_sweep(project, *argv, env=cluster.env()) as run:
        try:
            run.wait_for("1/2 done, 1 running")
            job = run.job
            held = cluster.slurm("squeue", "-h", "-j", job, "-t", "RUNNING", "-o", "%i").split()
            assert len(held) == 1, held
            # Cancelled by someone else (an admin, a reservation): not by this sweep's SIGTERM.
            cluster.slurm("scancel", held[0])
            rc, err = run.finish()
        finally:
            # The held task would keep a CPU of the shared cluster for 10 minutes.
            if run.proc.poll() is None and "submitted array " in "".join(run.lines):
                cluster.slurm("scancel", run.job)
    try:
        assert rc == 1, err
        bad = int(held[0].split("_")[1])
        record = json.loads((project.path / "reports/sweep.json").read_text())
        assert record["points"][bad]["state"] == "CANCELLED", err

        rerun = project.sweep(*argv, env=cluster.env())
        assert rerun.returncode == 0, rerun.stderr
        new = submitted([rerun.stderr])
        assert f"(--array={bad}%2," in rerun.stderr
        again = json.loads((project.path / "reports/sweep.json").read_text())
        assert all(p["state"] == "COMPLETED" and p["experiment"] for p in again["points"])
        assert again["points"][bad]["task_id"] == f"{new}_{bad}"
        assert sorted(exp_commits(project)) == sorted(p["name"] for p in again["points"])
    finally:
        marker.unlink(missing_ok=True)
