"""The array under faults, as a single offload is under them (tests/slurm/test_faults.py):
a dropped SSH connection, a requeued task, SIGTERM while the login node is gone; and a point
imported while the others still run.
A PREEMPTED task is in test_array_preempted.py, a FAILED or CANCELLED one in
test_array_rerun.py."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from machinery.slurm.lease import CANCEL_RECONNECT_S
from tests.slurm.conftest import Cluster
from tests.slurm.test_faults import sshd_session_pids
from tests.sweep.project import SweepProject, make_sweep_project
from tests.support.relay import TcpRelay
from tests.sweep.running import exp_refs, running_sweep

pytestmark = [pytest.mark.integration]

TWO_POINTS = ("train", "-S", "train.ridge.alpha=0,1", "-j", "2")


@pytest.fixture
def slow_project(tmp_path: Path) -> SweepProject:
    """Points of a few seconds each: time to do something to a running task."""
    return make_sweep_project(tmp_path / "p", secrets.token_hex(4), sleep=4)


def test_a_finished_point_is_an_experiment_while_the_others_still_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    project = make_sweep_project(tmp_path / "p", secrets.token_hex(4))
    with running_sweep(
        project, "train", "-S", "train.sleep=0,20", "-j", "2", env=cluster.env()
    ) as run:
        run.wait_for("submitted array")
        run.wait_for("1/2 done, 1 running")
        deadline = time.monotonic() + 15
        while "sleep-0" not in exp_refs(project) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Imported (an experiment in the workspace's git) while the slow task still runs.
        assert "sleep-0" in exp_refs(project), "".join(run.lines)
        assert cluster.job_state(f"{run.job}_1") == "RUNNING"
        rc, err = run.finish()
    assert rc == 0, err
    assert sorted(exp_refs(project)) == ["sleep-0", "sleep-20"]
    record = json.loads((project.path / "reports/sweep.json").read_text())
    assert all(p["experiment"] for p in record["points"])


def test_a_dropped_ssh_connection_reconnects_and_keeps_watching(
    cluster: Cluster, slow_project: SweepProject
) -> None:
    with running_sweep(slow_project, *TWO_POINTS, env=cluster.env()) as run:
        run.wait_for("submitted array")
        run.wait_for("running")
        pids = sshd_session_pids(cluster.info.ssh_port, run.proc.pid)
        assert pids, "no sshd session serving the sweep"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        rc, err = run.finish()
    assert rc == 0, err
    assert "reconnected" in err
    assert sorted(exp_refs(slow_project)) == ["ridge.alpha-0", "ridge.alpha-1"]
    record = json.loads((slow_project.path / "reports/sweep.json").read_text())
    assert record["job_id"] == run.job  # the same array, watched again: nothing resubmitted
    assert cluster.jobs_named(f"mlops-{record['identity']}") == [f"{run.job}_0", f"{run.job}_1"]


def test_a_requeued_task_runs_again_and_its_point_completes(
    cluster: Cluster, slow_project: SweepProject
) -> None:
    with running_sweep(slow_project, *TWO_POINTS, env=cluster.env()) as run:
        run.wait_for("submitted array")
        run.wait_for("2 running")
        task = f"{run.job}_1"
        cluster.requeue_now(task)
        rc, err = run.finish(timeout=180)
    assert rc == 0, err
    assert f"task {task} requeued" in err
    assert sorted(exp_refs(slow_project)) == ["ridge.alpha-0", "ridge.alpha-1"]
    record = json.loads((slow_project.path / "reports/sweep.json").read_text())
    point = next(p for p in record["points"] if p["index"] == 1)
    assert point["state"] == "COMPLETED" and point["restarts"] == 1


def test_sigterm_with_the_login_node_gone_stops_trying_to_cancel_within_seconds(
    cluster: Cluster, slow_project: SweepProject
) -> None:
    # A long reconnect window for the watcher; the cancel on the way out must not use it.
    relay = TcpRelay(cluster.info.ssh_port)
    env = cluster.env_via(relay.port) | {"MLOPS_SLURM_RECONNECT_TIMEOUT": "120"}
    # After its first poll the watcher sleeps: the cut is only found by the cancel.
    env["MLOPS_SLURM_POLL_INTERVAL"] = "60"
    with running_sweep(slow_project, *TWO_POINTS, env=env) as run:
        try:
            run.wait_for("submitted array")
            run.wait_for(" pending, ")
            relay.cut()
            started = time.monotonic()
            run.proc.send_signal(signal.SIGTERM)
            try:
                rc, err = run.finish(timeout=CANCEL_RECONNECT_S + 30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still trying to cancel after SIGTERM: {''.join(run.lines)}")
            took = time.monotonic() - started
        finally:
            if "submitted array " in "".join(run.lines):
                cluster.slurm("scancel", run.job)  # nobody else could
    assert rc == 143, err
    assert f"could not cancel array {run.job}" in err and "gave up reconnecting" in err, err
    assert "Traceback" not in err
    assert took < CANCEL_RECONNECT_S + 15, f"{took:.1f} s to give up: {err}"
