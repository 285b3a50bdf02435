"""PREEMPTED array tasks, on a real cluster whose ``urgent`` partition preempts ``debug``
(tests/slurm/preemption.py), as a PREEMPTED single job is (test_no_accounting_cluster.py): the
sweep ends non-zero and lists them, the completed points are kept, and a rerun submits one new
array over just the preempted points."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster
from tests.slurm.preemption import preempt, start_preempting_cluster
from tests.support.markdown import paragraphs, table_with_header
from tests.sweep.project import make_sweep_project
from tests.sweep.running import exp_commits, running_sweep, submitted

pytestmark = [pytest.mark.integration]

# Four points on the cluster's two CPUs: the two with hold true wait (until the marker exists)
# and are running when the urgent job comes; the other two have completed by then.
GRID = ("train", "-S", "train.ridge.alpha=0,1", "-S", "train.hold=false,true", "-j", "4")
HELD = ["ridge.alpha-0_hold-True", "ridge.alpha-1_hold-True"]  # points 1 and 3
DONE = ["ridge.alpha-0_hold-False", "ridge.alpha-1_hold-False"]
REASON = "preempted by a higher-priority job; a rerun submits it again"


@dataclass
class Preempting:
    cluster: Cluster
    accounting: bool


@pytest.fixture(scope="module", params=["sacct", "no-accounting"])
def preempting(request: pytest.FixtureRequest) -> Iterator[Preempting]:
    """With accounting (~3 s more to start) the tasks' records come from sacct, as on the
    session's cluster; without slurmdbd from squeue and what each task wrote, as a single
    offload's do there."""
    accounting = request.param == "sacct"
    session = start_preempting_cluster(accounting=accounting)
    try:
        yield Preempting(session, accounting)
    finally:
        session.stop()


def test_preempted_points_are_listed_and_a_rerun_submits_just_them(
    preempting: Preempting, tmp_path: Path
) -> None:
    urgent, accounting = preempting.cluster, preempting.accounting
    token = secrets.token_hex(4)
    marker = urgent.home_path(f".mlops-sweep-preempt-{token}")
    train = {"hold": False, "hold_until": f"~/{marker.name}"}
    project = make_sweep_project(tmp_path / "p", token, train=train)
    env = urgent.env() | {"MLOPS_SLURM_ACCOUNTING_WAIT": "60"}  # a wait for sacct would show
    try:
        with running_sweep(project, *GRID, env=env) as run:
            run.wait_for("submitted array")
            run.wait_for("2/4 done, 2 running")
            preempt(urgent)
            rc, err = run.finish()
        job = run.job
        assert rc == 1, err
        assert err.strip().splitlines()[-1] == (
            f"error: 2 of 4 points failed: {HELD[0]} (PREEMPTED), {HELD[1]} (PREEMPTED)"
        )
        assert "2/4 done, 0 running, 0 pending, 2 failed" in err
        assert f"point {HELD[0]}: PREEMPTED: {REASON}" in err
        assert "DUE TO PREEMPTION" in err  # slurmstepd's line, in the log's tail
        record = json.loads((project.path / "reports/sweep.json").read_text())
        if accounting:
            tasks = urgent.slurm("sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State")
            assert sorted(tasks.split()) == [
                f"{job}_0|COMPLETED",
                f"{job}_1|PREEMPTED",
                f"{job}_2|COMPLETED",
                f"{job}_3|PREEMPTED",
            ]
            assert record["efficiency"] is not None
        else:
            assert "no accounting (Slurm accounting storage is disabled)" in err
            assert record["timings_s"]["accounting"] < 5, record["timings_s"]
            assert record["efficiency"] is None and record["total_cpu_s"] is None
        failed = [
            (p["name"], p["state"], p["reason"]) for p in record["points"] if not p["experiment"]
        ]
        assert failed == [(HELD[0], "PREEMPTED", REASON), (HELD[1], "PREEMPTED", REASON)]
        kept = exp_commits(project)
        assert sorted(kept) == DONE
        section = (project.path / "reports/sweep.md").read_text()
        assert table_with_header(section, "experiment", "params", "state", "reason")[1:] == [
            [HELD[0], "train.ridge.alpha=0, train.hold=True", "PREEMPTED", REASON],
            [HELD[1], "train.ridge.alpha=1, train.hold=True", "PREEMPTED", REASON],
        ]

        marker.touch()  # the held points now run through
        rerun = project.sweep(*GRID, env=env)
        assert rerun.returncode == 0, rerun.stderr
        new = submitted([rerun.stderr])
        assert (
            f"array {job} of this identity ended with 2 of 4 point(s) not completed "
            f"({HELD[0]}: PREEMPTED, {HELD[1]}: PREEMPTED); submitted array {new} over them "
            "(--array=1,3%4, " in rerun.stderr
        )
        name = f"mlops-{record['identity']}"
        old = [f"{job}_{i}" for i in range(4)]
        assert urgent.jobs_named(name) == sorted([*old, f"{new}_1", f"{new}_3"])
        again = json.loads((project.path / "reports/sweep.json").read_text())
        assert all(p["state"] == "COMPLETED" and p["experiment"] for p in again["points"])
        assert [p["task_id"] for p in again["points"]] == [
            f"{job}_0",
            f"{new}_1",
            f"{job}_2",
            f"{new}_3",
        ]
        assert again["arrays"] == [
            {"job_id": job, "array": "0-3"},
            {"job_id": new, "array": "1,3"},
        ]
        commits = exp_commits(project)
        assert sorted(commits) == sorted(DONE + HELD)
        assert {k: commits[k] for k in kept} == kept  # not run or saved again
        section = (project.path / "reports/sweep.md").read_text()
        facts, rerun_line = paragraphs(section)[:2]
        assert facts.startswith(f"Slurm arrays {job} (--array=0-3), then {new} (--array=1,3) · ")
        assert rerun_line == (
            "Rerun in a later array (an earlier task did not complete): "
            f"{HELD[0]} ({new}_1), {HELD[1]} ({new}_3)"
        )
    finally:
        marker.unlink(missing_ok=True)
