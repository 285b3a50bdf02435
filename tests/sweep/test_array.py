"""A grid as ONE Slurm job array on the real local cluster (over SSH), each point a DVC
experiment; the same grid here (transport none) gives the same metrics and model bytes."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.slurm.conftest import Cluster, wait_for_line
from tests.sweep.project import SweepProject, make_sweep_project

pytestmark = [pytest.mark.integration]

GRID = ["-S", "train.estimator=ridge,knn", "-S", "train.ridge.alpha=0,1,10"]
GRID += ["-S", "train.knn.k=1,3,5"]
SLEEP = 1.2
NAMES = {
    "estimator-ridge_ridge.alpha-0",
    "estimator-ridge_ridge.alpha-1",
    "estimator-ridge_ridge.alpha-10",
    "estimator-knn_knn.k-1",
    "estimator-knn_knn.k-3",
    "estimator-knn_knn.k-5",
}


@dataclass
class Swept:
    project: SweepProject
    proc: subprocess.CompletedProcess[str]
    record: dict  # type: ignore[type-arg]
    token: str


def array_tasks(cluster: Cluster, job_id: str) -> list[tuple[str, str]]:
    """(JobID, State) of the array's allocation rows in sacct."""
    out = cluster.slurm("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State")
    return [tuple(ln.split("|")) for ln in out.splitlines() if ln.strip()]  # type: ignore[misc]


def model_md5s(project: SweepProject) -> dict[str, str]:
    """Each experiment's model bytes, as the md5 its commit's dvc.lock records."""
    out = {}
    refs = project.must("git", "for-each-ref", "--format=%(refname)", "refs/exps/").split()
    for ref in refs:
        if ref.split("/")[2] in ("exec", "apply"):  # DVC's own bookkeeping refs
            continue
        lock = yaml.safe_load(project.must("git", "show", f"{ref}:dvc.lock"))
        outs = lock["stages"]["train"]["outs"]
        out[ref.rsplit("/", 1)[1]] = next(
            o["md5"] for o in outs if o["path"] == "models/model.json"
        )
    return out


@pytest.fixture(scope="module")
def swept(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    token = secrets.token_hex(4)
    # Points of over a second: sacct's Elapsed is whole seconds, and E needs some.
    project = make_sweep_project(tmp_path_factory.mktemp("array") / "p", token, sleep=SLEEP)
    proc = project.sweep("train", *GRID, "--max-parallel", "3", env=cluster.env())
    assert proc.returncode == 0, proc.stderr
    record = json.loads((project.path / "reports/sweep.json").read_text())
    return Swept(project, proc, record, token)


def test_a_six_point_grid_is_one_array_job(swept: Swept, cluster: Cluster) -> None:
    job = swept.record["job_id"]
    assert f"submitted array {job} (--array=0-5%3" in swept.proc.stderr
    tasks = array_tasks(cluster, job)
    assert sorted(t for t, _ in tasks) == [f"{job}_{i}" for i in range(6)]
    assert {s for _, s in tasks} == {"COMPLETED"}
    # Nothing else carries the sweep's job name: one submission, not six.
    name = "mlops-" + swept.record["identity"]
    arrays = cluster.slurm("squeue", "-a", "-h", "-t", "all", "--name", name, "-o", "%F")
    assert set(arrays.split()) == {job}
    assert "6/6 done, 0 running, 0 pending, 0 failed" in swept.proc.stderr


def test_every_point_is_a_dvc_experiment_with_its_params_and_metrics(swept: Swept) -> None:
    exps = {e["name"]: e for e in swept.project.exp_show()}
    assert set(exps) == NAMES
    assert exps["estimator-knn_knn.k-3"]["params"]["train"]["knn"]["k"] == 3
    assert exps["estimator-knn_knn.k-3"]["params"]["train"]["estimator"] == "knn"
    assert exps["estimator-ridge_ridge.alpha-10"]["params"]["train"]["ridge"]["alpha"] == 10
    by_name = {p["name"]: p for p in swept.record["points"]}
    for name, exp in exps.items():
        assert exp["metrics"] == by_name[name]["metrics"]
        assert set(exp["metrics"]) == {"mse", "r2"}
    assert len({e["metrics"]["mse"] for e in exps.values()}) == 6
    # Per-task figures from sacct (JobID_TaskID rows), E over the array.
    assert {p["task_id"] for p in swept.record["points"]} == {
        f"{swept.record['job_id']}_{i}" for i in range(6)
    }
    assert all(p["total_cpu_s"] is not None for p in swept.record["points"])
    assert 0 < swept.record["efficiency"] <= 1


def test_best_names_the_experiment_with_the_lowest_error(swept: Swept) -> None:
    exps = swept.project.exp_show()
    lowest = min(exps, key=lambda e: e["metrics"]["mse"])["name"]
    proc = swept.project.sweep("--best")
    assert proc.stdout.strip() == lowest
    highest_r2 = max(exps, key=lambda e: e["metrics"]["r2"])["name"]
    assert swept.project.sweep("--best", "r2").stdout.strip() == highest_r2
    # dvc exp apply makes it the workspace
    swept.project.must("dvc", "exp", "apply", lowest)
    applied = json.loads((swept.project.path / "eval/metrics.json").read_text())
    assert applied == next(e["metrics"] for e in exps if e["name"] == lowest)
    swept.project.must("git", "checkout", "-q", "--", ".")


def test_a_rerun_of_a_finished_sweep_submits_nothing(swept: Swept, cluster: Cluster) -> None:
    job = swept.record["job_id"]
    proc = swept.project.sweep("train", *GRID, "--max-parallel", "3", env=cluster.env())
    assert proc.returncode == 0, proc.stderr
    assert f"reattaching to array {job}" in proc.stderr
    assert "submitted" not in proc.stderr
    name = "mlops-" + swept.record["identity"]
    arrays = cluster.slurm("squeue", "-a", "-h", "-t", "all", "--name", name, "-o", "%F")
    assert set(arrays.split()) == {job}
    assert {e["name"] for e in swept.project.exp_show()} == NAMES


def test_transport_none_gives_the_same_metrics_and_model_bytes(
    swept: Swept, tmp_path: Path
) -> None:
    here = make_sweep_project(tmp_path / "here", swept.token, sleep=SLEEP)
    proc = here.sweep("train", *GRID, "--max-parallel", "2", env={"MLOPS_SLURM_TRANSPORT": "none"})
    assert proc.returncode == 0, proc.stderr
    assert "6 points, at most 2 at a time (none)" in proc.stderr
    local = {e["name"]: e["metrics"] for e in here.exp_show()}
    array = {e["name"]: e["metrics"] for e in swept.project.exp_show()}
    assert local == array
    assert model_md5s(here) == model_md5s(swept.project)
    assert len(set(model_md5s(here).values())) == 6
    # The workspace is left as it was: same params, no outs made, nothing else changed.
    assert (here.path / "params.yaml").read_text() == (
        swept.project.path / "params.yaml"
    ).read_text()
    assert not (here.path / "models").exists()
    status = here.must("git", "status", "--porcelain").split("\n")
    assert [s for s in status if s.strip()] == ["?? reports/"]


def test_a_failing_point_keeps_the_other_five(cluster: Cluster, tmp_path: Path) -> None:
    project = make_sweep_project(tmp_path / "p", secrets.token_hex(4))
    grid = ["-S", "train.estimator=ridge,knn", "-S", "train.ridge.alpha=-1,0,1"]
    grid += ["-S", "train.knn.k=1,3,5"]
    proc = project.sweep("train", *grid, "--max-parallel", "3", env=cluster.env())
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "error: 1 of 6 points failed: estimator-ridge_ridge.alpha--1 (FAILED)"
    )
    assert "error: train.ridge.alpha: -1.0 is negative" in proc.stderr  # the log's tail
    assert {e["name"] for e in project.exp_show()} == {
        "estimator-ridge_ridge.alpha-0",
        "estimator-ridge_ridge.alpha-1",
        "estimator-knn_knn.k-1",
        "estimator-knn_knn.k-3",
        "estimator-knn_knn.k-5",
    }
    record = json.loads((project.path / "reports/sweep.json").read_text())
    failed = [p for p in record["points"] if p["state"] != "COMPLETED"]
    assert [(p["name"], p["state"], p["reason"]) for p in failed] == [
        ("estimator-ridge_ridge.alpha--1", "FAILED", "exit code 1")
    ]
    assert "error: train.ridge.alpha: -1.0 is negative" in failed[0]["log_tail"]


def slow_project(path: Path, seconds: float) -> SweepProject:
    return make_sweep_project(path, secrets.token_hex(4), sleep=seconds)


def test_sigterm_cancels_every_unfinished_task(cluster: Cluster, tmp_path: Path) -> None:
    project = slow_project(tmp_path / "p", 60)
    proc = project.popen("train", "-S", "train.ridge.alpha=0,1,2", "-j", "1", env=cluster.env())
    lines: list[str] = []
    wait_for_line(lines, "submitted array", proc, timeout=120)
    job = lines[-1].split("submitted array ")[1].split()[0]
    wait_for_line(lines, "1 running", proc, timeout=120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert f"cancelled array {job}" in err
    states = [s for _, s in array_tasks(cluster, job)]
    assert states and all(s.startswith("CANCELLED") for s in states), states
    assert not project.exp_show()


def test_a_rerun_after_sigkill_reattaches(cluster: Cluster, tmp_path: Path) -> None:
    project = slow_project(tmp_path / "p", 3)
    argv = ["train", "-S", "train.ridge.alpha=0,1", "-j", "1"]
    proc = project.popen(*argv, env=cluster.env())
    lines: list[str] = []
    wait_for_line(lines, "submitted array", proc, timeout=120)
    job = lines[-1].split("submitted array ")[1].split()[0]
    proc.kill()
    proc.communicate(timeout=60)
    again = project.sweep(*argv, env=cluster.env())
    assert again.returncode == 0, again.stderr
    assert f"reattaching to array {job}" in again.stderr
    assert "submitted" not in again.stderr
    assert {e["name"] for e in project.exp_show()} == {"ridge.alpha-0", "ridge.alpha-1"}
