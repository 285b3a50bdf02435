"""The array under faults, as a single offload is under them (tests/slurm/test_faults.py):
a dropped SSH connection, a requeued task; and a point imported while the others still run."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time

import pytest

from tests.slurm.conftest import Cluster, wait_for_line
from tests.slurm.test_faults import sshd_session_pids
from tests.sweep.project import SweepProject, make_sweep_project

pytestmark = [pytest.mark.integration]


def exp_refs(project: SweepProject) -> list[str]:
    refs = project.must("git", "for-each-ref", "--format=%(refname)", "refs/exps/").split()
    return [r.rsplit("/", 1)[1] for r in refs if r.split("/")[2] not in ("exec", "apply")]


def submitted(lines: list[str]) -> str:
    return "".join(lines).split("submitted array ")[1].split()[0]


def test_a_finished_point_is_an_experiment_while_the_others_still_run(
    cluster: Cluster, tmp_path: pytest.TempPathFactory
) -> None:
    project = make_sweep_project(tmp_path / "p", secrets.token_hex(4))  # type: ignore[operator]
    proc = project.popen("train", "-S", "train.sleep=0,20", "-j", "2", env=cluster.env())
    try:
        lines: list[str] = []
        wait_for_line(lines, "submitted array", proc, timeout=120)
        job = submitted(lines)
        wait_for_line(lines, "1/2 done, 1 running", proc, timeout=120)
        deadline = time.monotonic() + 15
        while "sleep-0" not in exp_refs(project) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Imported (an experiment in the workspace's git) while the slow task still runs.
        assert "sleep-0" in exp_refs(project), "".join(lines)
        assert cluster.job_state(f"{job}_1") == "RUNNING"
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, "".join(lines) + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert sorted(exp_refs(project)) == ["sleep-0", "sleep-20"]
    record = json.loads((project.path / "reports/sweep.json").read_text())
    assert all(p["experiment"] for p in record["points"])


def test_a_dropped_ssh_connection_reconnects_and_keeps_watching(
    cluster: Cluster, tmp_path: pytest.TempPathFactory
) -> None:
    project = make_sweep_project(  # type: ignore[operator]
        tmp_path / "p", secrets.token_hex(4), sleep=4
    )
    proc = project.popen("train", "-S", "train.ridge.alpha=0,1", "-j", "2", env=cluster.env())
    try:
        lines: list[str] = []
        wait_for_line(lines, "submitted array", proc, timeout=120)
        job = submitted(lines)
        wait_for_line(lines, "running", proc, timeout=120)
        pids = sshd_session_pids(cluster.info.ssh_port, proc.pid)
        assert pids, "no sshd session serving the sweep"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        err = "".join(lines) + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "reconnected" in err
    assert sorted(exp_refs(project)) == ["ridge.alpha-0", "ridge.alpha-1"]
    record = json.loads((project.path / "reports/sweep.json").read_text())
    assert record["job_id"] == job  # the same array, watched again: nothing resubmitted
    assert cluster.jobs_named(f"mlops-{record['identity']}") == [f"{job}_0", f"{job}_1"]


def test_a_requeued_task_runs_again_and_its_point_completes(
    cluster: Cluster, tmp_path: pytest.TempPathFactory
) -> None:
    project = make_sweep_project(  # type: ignore[operator]
        tmp_path / "p", secrets.token_hex(4), sleep=4
    )
    proc = project.popen("train", "-S", "train.ridge.alpha=0,1", "-j", "2", env=cluster.env())
    try:
        lines: list[str] = []
        wait_for_line(lines, "submitted array", proc, timeout=120)
        job = submitted(lines)
        wait_for_line(lines, "2 running", proc, timeout=120)
        task = f"{job}_1"
        cluster.slurm("scontrol", "requeue", task)
        deadline = time.monotonic() + 30
        while cluster.job_state(task) != "PENDING" and time.monotonic() < deadline:
            time.sleep(0.1)
        # Slurm holds a requeued job back (BeginTime) for ~2 minutes; a few seconds do here.
        time.sleep(2.5)
        cluster.slurm("scontrol", "update", f"jobid={task}", "StartTime=now")
        _, err = proc.communicate(timeout=180)
        err = "".join(lines) + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"task {task} requeued" in err
    assert sorted(exp_refs(project)) == ["ridge.alpha-0", "ridge.alpha-1"]
    record = json.loads((project.path / "reports/sweep.json").read_text())
    point = next(p for p in record["points"] if p["index"] == 1)
    assert point["state"] == "COMPLETED" and point["restarts"] == 1
