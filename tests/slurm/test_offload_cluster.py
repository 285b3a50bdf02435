"""Offload on the real local cluster: the job runs there, its outs and figures come back."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable

import pytest

from tests.slurm.conftest import Cluster, Project

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("timeout_job")]

Factory = Callable[..., Project]

# Reads the dep and the stage's params, burns CPU for ~1.5 s and allocates ~60 MB, so that
# accounting has real TotalCPU and MaxRSS to report.
BUSY_STAGE = (
    "mkdir -p out && tr a-z A-Z < data/input.txt > out/upper.txt && "
    "grep factor params.yaml > out/params.txt && echo line-from-the-job && "
    "python3 -c 'import time; b = bytearray(60 << 20); t = time.time()\n"
    "while time.time() - t < 1.5: pass'"
)


def test_stage_runs_on_slurm_and_brings_back_outs_and_accounting(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory(BUSY_STAGE)
    proc = project.run(cluster.env())
    assert proc.returncode == 0, proc.stderr
    # The outs were made on the cluster from the staged dep and params, and copied back.
    assert (project.path / "out/upper.txt").read_text() == "HELLO FROM THE RUNNER\n"
    assert "factor: 3" in (project.path / "out/params.txt").read_text()
    # Job output streamed into our log; state changes printed as they happened.
    assert proc.stdout.count("line-from-the-job") == 1
    assert "RUNNING on" in proc.stderr and "COMPLETED" in proc.stderr

    report = json.loads(project.report_path.read_text())
    assert report["transport"] == "ssh" and report["source"] == "sacct"
    assert report["state"] == "COMPLETED" and report["exit_code"] == 0
    assert cluster.jobs_named(f"mlops-{report['identity']}") == [report["job_id"]]
    assert report["node"] and report["alloc_cpus"] == 1
    assert report["run_time_s"] >= 1
    # A busy loop: most of the wall time is CPU time (the machine may be shared, so not all).
    # Elapsed has whole-second resolution, so a short job's efficiency can pass 1 a little.
    run, cpu, alloc = report["run_time_s"], report["total_cpu_s"], report["alloc_cpus"]
    assert 0.3 <= cpu <= (run + 1) * alloc
    assert report["cpu_efficiency"] == pytest.approx(cpu / (run * alloc))
    # E covers the stage's real segments: the capacity it asked for sits idle while it stages
    # in, queues, is detected and stages out, so E is below the CPU efficiency by that much.
    t = report["timings_s"]
    idle = sum(t.get(k, 0) for k in ("stage_in", "environment", "queue_wait", "detect"))
    idle += t["stage_out"]
    assert idle > 0
    assert report["stage_efficiency"] == pytest.approx(
        report["cpu_efficiency"] * run / (run + idle), rel=1e-3  # timings are rounded
    )
    assert report["stage_efficiency"] < report["cpu_efficiency"]
    # The outs come back with the modes a local run gives them, not the job's umask.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((project.path / "out/upper.txt").stat().st_mode) == 0o666 & ~umask
    assert report["max_rss_bytes"] >= 50 << 20
    assert report["queue_wait_s"] is not None and report["queue_wait_s"] >= 0
    assert report["short_job"] is True

    # The run dir on the cluster is private to the login user.
    run_dir = cluster.home_path(cluster.workdir[2:]) / "runs" / report["identity"]
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700


def test_retry_reattaches_instead_of_submitting_again(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("mkdir -p out && echo once > out/x.txt && sleep 1")
    first = project.run(cluster.env())
    assert first.returncode == 0, first.stderr
    job = json.loads(project.report_path.read_text())
    (project.path / "out/x.txt").unlink()

    again = project.run(cluster.env())
    assert again.returncode == 0, again.stderr
    retried = json.loads(project.report_path.read_text())
    assert retried["job_id"] == job["job_id"] and retried["reattached"] is True
    assert (project.path / "out/x.txt").read_text() == "once\n"
    assert cluster.jobs_named(f"mlops-{job['identity']}") == [job["job_id"]]


def test_two_concurrent_runs_make_one_job(cluster: Cluster, project_factory: Factory) -> None:
    project = project_factory("mkdir -p out && sleep 2 && echo ok > out/x.txt")
    env = cluster.env()
    procs = [project.start(env) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    identity = json.loads(project.report_path.read_text())["identity"]
    assert len(cluster.jobs_named(f"mlops-{identity}")) == 1
    assert sum("attached to job" in err or "reattaching" in err for _, err in results) == 1


@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_no_credentials_reach_the_cluster(
    cluster: Cluster, project_factory: Factory, transport: str
) -> None:
    project = project_factory("mkdir -p out && env > out/env.txt && find . -type f > out/files.txt")
    (project.path / ".dvc").mkdir()
    (project.path / ".dvc/config.local").write_text(
        "['remote \"s3\"']\n    secret_access_key = SECRETDVCKEY\n"
    )
    env = {
        **cluster.env(transport),
        "AWS_ACCESS_KEY_ID": "AKIASECRETID",
        "AWS_SECRET_ACCESS_KEY": "SECRETAWSKEY",
    }
    proc = project.run(env)
    assert proc.returncode == 0, proc.stderr
    seen = (project.path / "out/env.txt").read_text() + (project.path / "out/files.txt").read_text()
    for secret in ("AKIASECRETID", "SECRETAWSKEY", "SECRETDVCKEY", "config.local"):
        assert secret not in seen
    report = json.loads(project.report_path.read_text())
    assert report["transport"] == transport and report["state"] == "COMPLETED"
    assert "MLOPS_CODE_COMMIT=" in seen  # what the stage gets instead of a .git


def test_transport_none_runs_here_and_still_reports(project_factory: Factory) -> None:
    project = project_factory(BUSY_STAGE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
    proc = project.run({**env, "MLOPS_SLURM_TRANSPORT": "none"})
    assert proc.returncode == 0, proc.stderr
    assert (project.path / "out/upper.txt").read_text() == "HELLO FROM THE RUNNER\n"
    report = json.loads(project.report_path.read_text())
    assert report["transport"] == "none" and report["source"] == "none"
    assert report["job_id"] is None and report["state"] == "COMPLETED"
    # The figures go to the log; the record (a DVC output) holds only what the same inputs
    # always give, so a second run writes the same bytes.
    cpu, rss = re.search(r"CPU ([\d.]+) s on \d+ CPUs.*max RSS ([\d.]+) MiB", proc.stderr).groups()
    assert float(cpu) >= 0.3 and float(rss) >= 50
    first = project.report_path.read_bytes()
    assert project.run({**env, "MLOPS_SLURM_TRANSPORT": "none"}).returncode == 0
    assert project.report_path.read_bytes() == first


def test_job_output_streams_while_the_job_runs(cluster: Cluster, project_factory: Factory) -> None:
    project = project_factory("echo tick; sleep 4; mkdir -p out; echo tock > out/x.txt")
    proc = project.start(cluster.env())
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the offload ended before the job's output arrived"
        if "tick" in line:
            break
    # The job is still running when its first line reaches us.
    assert cluster.slurm(
        "squeue", "-h", "-t", "all", "--name", f"mlops-{project.identity()}", "-o", "%T"
    ).split() == ["RUNNING"]
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_retry_after_a_failed_job_submits_a_new_one(
    cluster: Cluster, project_factory: Factory
) -> None:
    # Fails the first time (a transient fault), succeeds when run again: same identity.
    marker = f"$HOME/.flaky-{time.time_ns()}"
    project = project_factory(
        f"if [ ! -e {marker} ]; then touch {marker}; exit 1; fi; mkdir -p out; echo ok > out/x.txt"
    )
    first = project.run(cluster.env())
    assert first.returncode == 1, first.stderr
    failed = json.loads(project.report_path.read_text())
    second = project.run(cluster.env())
    assert second.returncode == 0, second.stderr
    retried = json.loads(project.report_path.read_text())
    assert retried["identity"] == failed["identity"]
    assert retried["job_id"] != failed["job_id"] and retried["reattached"] is False
    assert (project.path / "out/x.txt").read_text() == "ok\n"
