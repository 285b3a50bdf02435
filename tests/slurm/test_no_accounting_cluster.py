"""A second real cluster, without slurmdbd, whose high-tier partition preempts the default one.

``AccountingStorageType=accounting_storage/none`` (no MariaDB, no slurmdbd): sacct refuses at
once, so the record comes from squeue's last state and the exit code the job script wrote.
Its ``urgent`` partition preempts ``debug`` (tests/slurm/preemption.py): a job there that needs
the whole node makes a running job of ``debug`` end PREEMPTED. It runs beside the session's
shared cluster (own ports, state directory and munge socket).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.slurm.conftest import Cluster, Project, make_project, wait_for_line
from tests.slurm.preemption import preempt, start_preempting_cluster

pytestmark = pytest.mark.integration

# Far more than a run takes: a run that waited it out for sacct would show.
ACCOUNTING_WAIT = 60
DISABLED = "Slurm accounting storage is disabled"  # sacct's own words on such a cluster


@pytest.fixture(scope="module")
def bare(cluster: Cluster) -> Iterator[Cluster]:
    """Started while the shared cluster runs (``cluster``), as in the full suite."""
    session = start_preempting_cluster(accounting=False)
    try:
        yield session
    finally:
        session.stop()


def env_of(bare: Cluster) -> dict[str, str]:
    return bare.env() | {"MLOPS_SLURM_ACCOUNTING_WAIT": str(ACCOUNTING_WAIT)}


def submitted_job(stderr: str) -> str:
    return stderr.split("submitted job ")[1].split()[0]


def test_it_runs_beside_the_shared_cluster(bare: Cluster, cluster: Cluster) -> None:
    assert bare.info.ssh_port != cluster.info.ssh_port
    assert bare.info.slurm_conf != cluster.info.slurm_conf
    jobs = {
        c.info.slurm_conf: c.slurm("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true")
        for c in (bare, cluster)
    }
    deadline = time.monotonic() + 30
    for c in (bare, cluster):
        job = jobs[c.info.slurm_conf].strip()
        while c.job_state(job) != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.job_state(job) == "COMPLETED"
    assert bare.slurm("sinfo", "-h", "-o", "%P").split() == ["debug*", "urgent"]
    assert cluster.slurm("sinfo", "-h", "-o", "%P").split() == ["debug*"]
    cluster.slurm("sacct", "-n", "-X")  # the shared one keeps its accounting
    with pytest.raises(subprocess.CalledProcessError) as refused:
        bare.slurm("sacct", "-n", "-X")
    assert refused.value.stderr.strip() == DISABLED


Run = tuple[Project, subprocess.CompletedProcess[str], dict[str, Any]]


def offload_at_once(bare: Cluster, path: Path, shell: str) -> Run:
    """Offload a stage; it must not wait for sacct, and its record must say it is squeue's."""
    project = make_project(path, shell)
    started = time.monotonic()
    proc = project.run(env_of(bare))
    took = time.monotonic() - started
    assert took < ACCOUNTING_WAIT / 3, f"{took:.1f} s: waited for sacct?\n{proc.stderr}"
    assert "waiting up to" not in proc.stderr
    assert f"({DISABLED}); using squeue's state" in proc.stderr
    assert project.report_path.is_file(), proc.stderr
    report = json.loads(project.report_path.read_text())
    assert report["identity"] == project.identity()
    assert report["job_id"] == submitted_job(proc.stderr)
    assert report["source"] == "squeue"
    assert report["note"] == f"accounting unavailable: {DISABLED}"
    assert report["cpu_efficiency"] is None and report["max_rss_bytes"] is None
    assert report["total_cpu_s"] is None  # unknown, never a made-up 0.0
    return project, proc, report


def test_a_job_completes_without_slurmdbd_on_squeues_word_at_once(
    bare: Cluster, tmp_path: Path
) -> None:
    shell = "sleep 1; mkdir -p out; echo ok > out/x.txt"
    project, proc, report = offload_at_once(bare, tmp_path / "p", shell)
    assert proc.returncode == 0, proc.stderr
    assert (project.path / "out/x.txt").read_text() == "ok\n"
    assert (report["state"], report["exit_code"], report["reason"]) == ("COMPLETED", 0, None)
    assert report["run_time_s"] >= 1 and report["node"]


def test_a_failing_job_without_slurmdbd_keeps_its_exit_code(bare: Cluster, tmp_path: Path) -> None:
    shell = "echo the-last-words; exit 3"
    project, proc, report = offload_at_once(bare, tmp_path / "p", shell)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    expected = f"error: Slurm job {report['job_id']} FAILED (exit code 3, reason NonZeroExitCode)"
    assert last == expected, proc.stderr
    assert "the-last-words" in proc.stderr  # the log's tail
    assert (report["state"], report["exit_code"]) == ("FAILED", 3)
    assert report["reason"] == "NonZeroExitCode"  # squeue's, as sacct's would be
    assert not (project.path / "out").exists()


def test_a_preempted_job_is_replaced_by_a_rerun(bare: Cluster, tmp_path: Path) -> None:
    # The same command (so the same identity) waits to be preempted on the first run, and
    # finishes at once on the rerun, once the marker exists.
    marker = bare.home_path(f".mlops-preempt-{secrets.token_hex(4)}")
    project = make_project(
        tmp_path / "p",
        f"if [ -e ~/{marker.name} ]; then mkdir -p out; echo ok > out/x.txt; "
        "else echo waiting-for-preemption; sleep 600; fi",
    )
    proc = project.start(env_of(bare))
    try:
        seen: list[str] = []
        wait_for_line(seen, "RUNNING", proc, timeout=60)
        job = submitted_job("".join(seen))
        preempt(bare)
        _, err = proc.communicate(timeout=60)
        err = "".join(seen) + err
        assert proc.returncode == 1, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: Slurm job {job} PREEMPTED"), last
        assert "DUE TO PREEMPTION" in err  # slurmstepd's line, in the log's tail
        report = json.loads(project.report_path.read_text())
        assert (report["job_id"], report["state"]) == (job, "PREEMPTED")

        marker.touch()
        rerun = project.run(env_of(bare))
        assert rerun.returncode == 0, rerun.stderr
        assert f"job {job} of this identity ended PREEMPTED; submitting again" in rerun.stderr
        new = submitted_job(rerun.stderr)
        assert new != job and json.loads(project.report_path.read_text())["job_id"] == new
        assert (project.path / "out/x.txt").read_text() == "ok\n"
    finally:
        marker.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
