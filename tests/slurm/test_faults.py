"""Faults on the real cluster: dropped SSH, cancelled CI job, failed job, time limit, bad config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster, Project, TimeoutRun, wait_for_line
from tests.support.relay import TcpRelay

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("timeout_job")]

Factory = Callable[..., Project]


def sshd_session_pids(port: int, client_pid: int) -> list[int]:
    """The sshd processes serving ``client_pid``'s connection to the login node (only that one:
    other tests' offloads use the same sshd)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split(None, 4) for line in out.splitlines()]
    client_ports = [
        local.rsplit(":", 1)[1]
        for _, _, local, peer, *proc in rows
        if peer.endswith(f":{port}") and f"pid={client_pid}," in "".join(proc)
    ]
    pids = set()
    for _, _, local, peer, *proc in rows:
        if local.endswith(f":{port}") and peer.rsplit(":", 1)[1] in client_ports:
            for part in "".join(proc).split("pid=")[1:]:
                pids.add(int(part.split(",")[0]))
    return sorted(pids)


def test_dropped_ssh_connection_reconnects_and_keeps_watching(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("mkdir -p out && echo before; sleep 4; echo after > out/x.txt")
    proc = project.start(cluster.env())
    seen: list[str] = []
    wait_for_line(seen, "RUNNING", proc, timeout=60)
    pids = sshd_session_pids(cluster.info.ssh_port, proc.pid)
    assert pids, "no sshd session serving the offload"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert "reconnected" in err
    assert (project.path / "out/x.txt").read_text() == "after\n"
    report = json.loads(project.report_path.read_text())
    assert cluster.jobs_named(f"mlops-{report['identity']}") == [report["job_id"]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cancelled_ci_job_cancels_the_slurm_job(
    cluster: Cluster, project_factory: Factory, sig: signal.Signals
) -> None:
    project = project_factory("echo started; sleep 300")
    proc = project.start(cluster.env())
    seen: list[str] = []
    wait_for_line(seen, "RUNNING", proc, timeout=60)
    job_id = next(ln for ln in seen if "submitted job" in ln).split("submitted job ")[1].split()[0]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = "".join(seen) + err
    assert proc.returncode == 128 + sig, err
    assert f"cancelled job {job_id}" in err
    assert "Traceback" not in err
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        state = cluster.slurm("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").strip()
        if state == "CANCELLED":
            break
        time.sleep(0.2)
    assert state == "CANCELLED"


def test_failing_job_exits_non_zero_with_state_reason_and_log(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("echo the-last-words >&2; echo more-context; exit 1")
    proc = project.run(cluster.env())
    assert proc.returncode == 1
    assert "the-last-words" in proc.stderr and "more-context" in proc.stderr  # the log's tail
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Slurm job ") and "FAILED" in last
    assert "exit code 1" in last and "NonZeroExitCode" in last
    report = json.loads(project.report_path.read_text())
    assert report["state"] == "FAILED" and report["exit_code"] == 1
    assert not (project.path / "out").exists()


def test_too_short_time_limit_is_reported_as_timeout(
    cluster: Cluster, timeout_job: TimeoutRun
) -> None:
    out, err = timeout_job.proc.communicate(timeout=240)
    assert timeout_job.proc.returncode == 1, err
    assert "started" in out
    assert "TIMEOUT" in err.strip().splitlines()[-1]
    report = json.loads(timeout_job.project.report_path.read_text())
    assert report["state"] == "TIMEOUT" and report["time_limit_s"] == 60
    assert report["run_time_s"] >= 60


def _bad_config(cluster: Cluster, tmp_path: Path, case: str) -> dict[str, str]:
    env = cluster.env()
    if case == "unknown partition":
        env["MLOPS_SLURM_JOB__PARTITION"] = "nosuch"
    elif case == "unreachable host":
        with __import__("socket").socket() as sock:
            sock.bind(("127.0.0.1", 0))
            env["MLOPS_SLURM_SSH_PORT"] = str(sock.getsockname()[1])  # nothing listens there
    elif case == "host key mismatch":
        key = tmp_path / "other_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        kind, blob = key.with_suffix(".pub").read_text().split()[:2]
        env["MLOPS_SLURM_SSH_KNOWN_HOSTS"] = f"[127.0.0.1]:{cluster.info.ssh_port} {kind} {blob}"
    elif case == "unknown host key":
        env["MLOPS_SLURM_SSH_KNOWN_HOSTS"] = (
            "[10.9.9.9]:22 " + env["MLOPS_SLURM_SSH_KNOWN_HOSTS"].split(" ", 1)[1]
        )
    elif case == "missing key":
        env["MLOPS_SLURM_SSH_KEY_FILE"] = str(tmp_path / "no_such_key")
    return env


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown partition", "invalid partition"),
        ("unreachable host", "cannot reach the login node"),
        ("host key mismatch", "does not match"),
        ("unknown host key", "not found in known_hosts"),
        ("missing key", "not found"),
    ],
)
def test_bad_configuration_is_one_clear_line_and_leaves_nothing_running(
    cluster: Cluster, project_factory: Factory, tmp_path: Path, case: str, message: str
) -> None:
    project = project_factory("mkdir -p out && touch out/x")
    proc = project.run(_bad_config(cluster, tmp_path, case), timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0].lower(), lines
    assert cluster.jobs_named(f"mlops-{project.identity()}") == []  # nothing was submitted
    runs = cluster.home_path(cluster.workdir[2:]) / "runs"
    leftovers = [p.name for p in runs.glob("work-*")] if runs.is_dir() else []
    assert not [n for n in leftovers if not (runs / n / "jobid").exists()]


def test_login_node_gone_for_good_gives_up_and_a_rerun_reattaches(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory("mkdir -p out && sleep 6; echo done > out/x.txt")
    relay = TcpRelay(cluster.info.ssh_port)
    via_relay = cluster.env_via(relay.port) | {"MLOPS_SLURM_RECONNECT_TIMEOUT": "3"}
    proc = project.start(via_relay)
    seen: list[str] = []
    wait_for_line(seen, "RUNNING", proc, timeout=60)
    relay.cut()
    _, err = proc.communicate(timeout=60)
    err = "".join(seen) + err

    assert proc.returncode != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "gave up reconnecting" in errors[0] and "rerun to reattach" in errors[0]

    # The job ran on without us; once the login node is back, a rerun picks it up.
    rerun = project.run(cluster.env())
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(project.report_path.read_text())
    assert report["reattached"] is True and report["state"] == "COMPLETED"
    assert cluster.jobs_named(f"mlops-{report['identity']}") == [report["job_id"]]
    assert (project.path / "out/x.txt").read_text() == "done\n"
