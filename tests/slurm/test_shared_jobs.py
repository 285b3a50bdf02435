"""Shared jobs, login shells and the controller, on the real cluster: a cancelled run leaves a job
another run waits for; a talkative or broken login shell; a silent slurmctld; --resubmit."""

from __future__ import annotations

import json
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster, Project, wait_for_line

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("timeout_job")]

Factory = Callable[..., Project]


def _job_id(lines: list[str]) -> str:
    line = next(ln for ln in lines if "submitted job" in ln)
    return line.split("submitted job ")[1].split()[0]


def test_cancelling_one_run_leaves_the_job_another_run_waits_for(
    cluster: Cluster, project_factory: Factory
) -> None:
    # A branch pipeline and a merge-request pipeline on one commit share one job; GitLab
    # auto-cancels one of them.
    project = project_factory("echo started; sleep 6; mkdir -p out; echo ok > out/x.txt")
    first = project.start(cluster.env())
    seen_first: list[str] = []
    wait_for_line(seen_first, "submitted job", first, timeout=60)
    job_id = _job_id(seen_first)
    second = project.start(cluster.env())
    seen_second: list[str] = []
    wait_for_line(seen_second, "reattaching to job", second, timeout=60)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    err = "".join(seen_first) + err
    assert first.returncode == 128 + signal.SIGTERM, err
    assert f"left job {job_id} running: 1 other run(s) still wait for it" in err
    _, err2 = second.communicate(timeout=120)
    assert second.returncode == 0, "".join(seen_second) + err2
    assert (project.path / "out/x.txt").read_text() == "ok\n"
    assert json.loads(project.report_path.read_text())["job_id"] == job_id


def test_a_crashed_runs_lease_expires_and_cancel_works_again(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("echo started; sleep 120")
    crashed = project.start(cluster.env())
    seen: list[str] = []
    wait_for_line(seen, "RUNNING", crashed, timeout=60)
    job_id = _job_id(seen)
    crashed.kill()  # SIGKILL: no chance to release its lease
    crashed.communicate(timeout=30)
    env = cluster.env() | {"MLOPS_SLURM_LEASE_TTL": "1"}
    rerun = project.start(env)
    seen_rerun: list[str] = []
    wait_for_line(seen_rerun, "reattaching to job", rerun, timeout=60)
    # The crashed run's heartbeat is now older than the TTL: the cancel's cut-off is whole
    # seconds (`date +%s` - TTL), so a touch up to 2 s old can still count as live, and a poll
    # the crashed run had in flight on the login node may have touched it after the kill.
    time.sleep(3)
    rerun.send_signal(signal.SIGTERM)
    _, err = rerun.communicate(timeout=60)
    err = "".join(seen_rerun) + err
    assert f"cancelled job {job_id}" in err, err
    deadline = time.monotonic() + 30
    while cluster.job_state(job_id) != "CANCELLED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.job_state(job_id) == "CANCELLED"


def _login_user(
    cluster: Cluster, name: str, rc_text: str, shell: str = "/bin/bash"
) -> Iterator[dict[str, str]]:
    """Another account on the login node (same key: sshd reads one authorized_keys file) whose
    shell rc file starts with ``rc_text``. Other tests' account stays untouched."""
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", shell, name], check=True)
    subprocess.run(["usermod", "-p", "*", "-s", shell, name], check=True)
    home = Path(pwd.getpwnam(name).pw_dir)
    rc = home / (".tcshrc" if shell.endswith("tcsh") else ".bashrc")
    rc.write_text(rc_text + "\n")
    shutil.chown(rc, name)
    yield cluster.env() | {"MLOPS_SLURM_SSH_USER": name}
    shutil.rmtree(home / cluster.workdir[2:], ignore_errors=True)


@pytest.fixture(params=["bash", "tcsh"])
def noisy_login(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    shell = shutil.which(request.param) or f"/bin/{request.param}"
    name = f"{cluster.info.user}-noisy-{request.param}"
    yield from _login_user(cluster, name, f"echo hello from {request.param} rc", shell)


@pytest.fixture
def broken_login(cluster: Cluster) -> Iterator[dict[str, str]]:
    yield from _login_user(cluster, f"{cluster.info.user}-broken", "echo hello; exit 0")


def test_a_login_shell_that_prints_does_not_disturb_the_offload(
    project_factory: Factory, noisy_login: dict[str, str]
) -> None:
    project = project_factory("mkdir -p out && printf 'a\\nb\\n' > out/x.txt")
    proc = project.run(noisy_login, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (project.path / "out/x.txt").read_bytes() == b"a\nb\n"  # the tar stream is intact
    assert proc.stderr.count("the login shell writes to stdout: 'hello from") == 1, proc.stderr
    assert json.loads(project.report_path.read_text())["state"] == "COMPLETED"


def test_a_login_shell_that_never_runs_our_command_fails_in_one_line(
    project_factory: Factory, broken_login: dict[str, str]
) -> None:
    project = project_factory("mkdir -p out && touch out/x")
    started = time.monotonic()
    proc = project.run(broken_login, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "the login shell writes to stdout: 'hello'" in lines[0]
    assert time.monotonic() - started < 30


def test_a_silent_controller_is_reported_by_time_with_its_error(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("sleep 5; mkdir -p out; echo ok > out/x.txt")
    env = cluster.env() | {"MLOPS_SLURM_CONTROLLER_WARN_AFTER": "2"}
    proc = project.start(env)
    seen: list[str] = []
    wait_for_line(seen, "RUNNING", proc, timeout=60)
    with cluster.paused("slurmctld"):
        wait_for_line(seen, "squeue has not answered for", proc, timeout=20)
    _, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    warning = next(ln for ln in err.splitlines() if "squeue has not answered for" in ln)
    assert "no answer within 2 s" in warning
    assert "squeue answers again" in err


def test_resubmit_replaces_a_completed_job(cluster: Cluster, project_factory: Factory) -> None:
    project = project_factory("mkdir -p out && date +%s%N > out/x.txt")
    first = project.run(cluster.env())
    assert first.returncode == 0, first.stderr
    job = json.loads(project.report_path.read_text())["job_id"]
    # As `dvc repro -f train` would run it (DVC passes no options: the variable does it).
    again = project.run(cluster.env() | {"MLOPS_SLURM_RESUBMIT": "1"})
    assert again.returncode == 0, again.stderr
    assert f"job {job} of this identity ended COMPLETED; resubmitting" in again.stderr
    report = json.loads(project.report_path.read_text())
    assert report["job_id"] != job and report["reattached"] is False
    # The option says the same (checked without a third job).
    dry = project.run(cluster.env(), options=("--resubmit", "--dry-run"))
    assert dry.returncode == 0 and "#SBATCH" in dry.stdout, dry.stderr
