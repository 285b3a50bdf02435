"""Whole logs, requeues, final states and job records on the real cluster."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable

import pytest

from tests.slurm.conftest import Cluster, Project, wait_for_line

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("timeout_job")]

Factory = Callable[..., Project]
LINES = 1_500_000  # ~11 MB of log, written in about a second


def test_a_large_log_reaches_the_ci_log_whole_also_on_reattach(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory(f"seq 1 {LINES}; mkdir -p out; touch out/x")
    first = project.run(cluster.env())
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.splitlines() == [str(i) for i in range(1, LINES + 1)]
    again = project.run(cluster.env())  # reattaches to the finished job: the whole log again
    assert again.returncode == 0 and "reattaching" in again.stderr, again.stderr[-2000:]
    assert again.stdout == first.stdout


def test_the_failure_tail_is_the_end_of_the_log(cluster: Cluster, project_factory: Factory) -> None:
    project = project_factory(f"seq 1 {LINES}; echo the-real-error; exit 3")
    proc = project.run(cluster.env())
    assert proc.returncode == 1
    tail = proc.stderr.split("last lines of job.log:")[1].split("error:")[0].split()
    assert tail[-2:] == [str(LINES), "the-real-error"], proc.stderr[-2000:]


def test_a_requeued_job_keeps_its_whole_log_and_counts_the_restart(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory(
        "echo attempt-${SLURM_RESTART_COUNT:-0}; "
        "for i in $(seq 1 16); do echo tick $i; sleep 0.25; done; mkdir -p out; touch out/x"
    )
    proc = project.start(cluster.env())
    seen: list[str] = []
    wait_for_line(seen, "RUNNING", proc, timeout=60)
    job_id = next(ln for ln in seen if "submitted job" in ln).split("submitted job ")[1].split()[0]
    time.sleep(1.5)
    cluster.requeue_now(job_id)
    out, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert f"job {job_id} requeued" in err
    # Every line the job printed is whole. Notices from Slurm (its line about the requeue) and
    # from bash (a "Terminated" report when the requeue kills `sleep` first, a race seen only
    # under load) are not the job's lines; a torn one ("ck 7", "tick 7tick 8") would fail.
    notice = re.compile(r"slurmstepd\S*: .*|.*\b(Terminated|Killed)\b.*")
    lines = [ln for ln in out.splitlines() if not notice.fullmatch(ln)]
    torn = [ln for ln in lines if not re.fullmatch(r"attempt-[01]|tick \d+", ln)]
    assert not torn, (torn, out)
    assert "attempt-0" in lines and "attempt-1" in lines
    assert lines[lines.index("attempt-1") :] == ["attempt-1"] + [f"tick {i}" for i in range(1, 17)]
    report = json.loads(project.report_path.read_text())
    assert report["restarts"] == 1 and report["state"] == "COMPLETED"
    assert report["reason"] is None  # not the BeginTime left over from the requeue


def test_a_job_past_its_deadline_is_replaced_by_a_rerun(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("mkdir -p out; echo ok > out/x.txt")
    env = cluster.env() | {"MLOPS_SLURM_JOB__EXTRA": '["--deadline=now+2"]'}
    first = project.run(env)
    assert first.returncode == 1 and "DEADLINE" in first.stderr, first.stderr
    dead = json.loads(project.report_path.read_text())["job_id"]
    rerun = project.run(cluster.env())
    assert rerun.returncode == 0, rerun.stderr
    assert f"job {dead} of this identity ended DEADLINE; submitting again" in rerun.stderr
    assert json.loads(project.report_path.read_text())["job_id"] != dead


def test_accounting_down_at_the_end_still_brings_the_outs_and_a_marked_record(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("sleep 1; mkdir -p out; echo ok > out/x.txt")
    # A record another identity left behind must not pass for this run's.
    project.report_path.parent.mkdir(parents=True)
    project.report_path.write_text(json.dumps({"identity": "work-other", "state": "COMPLETED"}))
    env = cluster.env() | {"MLOPS_SLURM_ACCOUNTING_WAIT": "3"}
    proc = project.start(env)
    seen: list[str] = []
    with cluster.paused("slurmdbd"):
        wait_for_line(seen, "RUNNING", proc, timeout=60)
        wait_for_line(seen, "waiting up to 3 s for sacct", proc, timeout=60)
        # The job is over: a CI job cancelled now must not claim it cancelled anything.
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        err = "".join(seen) + err
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "had already ended: nothing to cancel" in err and "cancelled job" not in err
        assert (project.path / "out/x.txt").read_text() == "ok\n"  # copied on squeue's word
        assert not project.report_path.exists()

        rerun = project.run(env)
        assert rerun.returncode == 0, rerun.stderr
    report = json.loads(project.report_path.read_text())
    assert report["identity"] == project.identity() and report["state"] == "COMPLETED"
    assert report["source"] == "squeue" and report["note"].startswith("accounting unavailable")
    assert report["cpu_efficiency"] is None and report["run_time_s"] >= 1


def test_a_missing_out_is_named(cluster: Cluster, project_factory: Factory) -> None:
    project = project_factory("mkdir -p out && touch out/x", outs=("out", "models/card.json"))
    proc = project.run(cluster.env())
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: job ") and "did not produce models/card.json" in last, last
