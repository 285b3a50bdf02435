"""A real single-node Slurm with accounting and an sshd login node, once per test session.

The cluster comes from the same code as ``make cluster-up`` (machinery.slurm.localcluster).
Tests drive ``mlops offload`` as a subprocess in small throwaway git projects, as DVC would.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from machinery.slurm.localcluster.cluster import ClusterInfo, LocalCluster

MLOPS = str(Path(sys.executable).parent / "mlops")
REPO = Path(__file__).resolve().parents[2]
# The node declares more CPUs than this machine has, so a long test job (the time-limit one)
# does not hold up the others.
CLUSTER_CPUS = 6


@dataclass
class Cluster:
    info: ClusterInfo
    workdir: str  # on the login node, per session: job ids restart with every cluster
    stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def env(self, transport: str = "ssh") -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SLURM_")}
        extra = self.info.env() if transport == "ssh" else self.info.local_env()
        return {**base, **extra, "MLOPS_SLURM_WORKDIR": self.workdir}

    def env_via(self, port: int) -> dict[str, str]:
        """``env()`` for a login node reached through ``port`` (a TcpRelay in front of sshd):
        the pinned host key is the same, under that port."""
        return self.env() | {
            "MLOPS_SLURM_SSH_PORT": str(port),
            "MLOPS_SLURM_SSH_KNOWN_HOSTS": self.info.known_hosts.replace(
                f"]:{self.info.ssh_port} ", f"]:{port} "
            ),
        }

    def slurm(self, *args: str) -> str:
        """Run a Slurm command here as root (sees every user's jobs)."""
        env = {**os.environ, "SLURM_CONF": self.info.slurm_conf}
        return subprocess.run(
            args, env=env, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def jobs_named(self, name: str) -> list[str]:
        """Every job with this name the controller knows, any state: it keeps finished jobs for
        MinJobAge (300 s), and sees them at once (sacct's time-window queries lag seconds)."""
        out = self.slurm("squeue", "-a", "-h", "-t", "all", "--name", name, "-o", "%i")
        return sorted(out.split())

    def queue(self) -> list[str]:
        out = self.slurm("squeue", "-h", "-u", self.info.user, "-o", "%i|%j|%T")
        return [ln for ln in out.splitlines() if ln.strip()]

    def home_path(self, rel: str) -> Path:
        import pwd

        return Path(pwd.getpwnam(self.info.user).pw_dir) / rel

    @property
    def runs(self) -> Path:
        return self.home_path(self.workdir[2:]) / "runs"

    @contextmanager
    def paused(self, daemon: str) -> Iterator[None]:
        """SIGSTOP one daemon (it hangs like an overloaded or unreachable one), then SIGCONT."""
        pids = dict(json.loads((Path(self.info.state_dir) / "pids.json").read_text()))
        os.kill(pids[daemon], signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pids[daemon], signal.SIGCONT)

    def job_state(self, job_id: str) -> str:
        return self.slurm("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").strip()

    def requeue_now(self, job_id: str) -> None:
        """``scontrol requeue`` a running job (or array task), then let it start again soon."""
        self.slurm("scontrol", "requeue", job_id)
        deadline = time.monotonic() + 30
        while self.job_state(job_id) != "PENDING" and time.monotonic() < deadline:
            time.sleep(0.1)
        # Slurm holds a requeued job back ~2 minutes (BeginTime) so that the first attempt's job
        # credential, revoked by the requeue, cannot start it; a few seconds are enough here.
        time.sleep(2.5)
        self.slurm("scontrol", "update", f"jobid={job_id}", "StartTime=now")


_SHARED: list[Cluster] = []  # one cluster per process, however many modules use the fixture
_USERS = [0]


@contextmanager
def _shared_cluster() -> Iterator[Cluster]:
    """Start the cluster on first use; stop it when the last user is done. tests/example
    imports the fixture below, which makes it a second fixture of the same name: both get
    this one cluster."""
    if not _SHARED:
        _SHARED.append(_start_cluster())
    _USERS[0] += 1
    try:
        yield _SHARED[0]
    finally:
        _USERS[0] -= 1
        if _USERS[0] == 0:
            _SHARED.pop().stop()


def _start_cluster() -> Cluster:
    reuse = os.environ.get("MLOPS_SLURM_TEST_CLUSTER")  # a `make cluster-up` dir, while developing
    if reuse:
        workdir = f"~/.mlops-test-{secrets.token_hex(3)}"
        session = Cluster(ClusterInfo.load(Path(reuse)), workdir)

        def stop_reused() -> None:
            shutil.rmtree(session.home_path(workdir[2:]), ignore_errors=True)

        session.stop = stop_reused
        return session
    return start_local_cluster(cpus=max(CLUSTER_CPUS, os.cpu_count() or 1))


def start_local_cluster(
    cpus: int, *, accounting: bool = True, extra_conf: Sequence[str] = ()
) -> Cluster:
    """A cluster of our own, its state in /tmp, stopped by PID (``stop``). Several run side by
    side: each has its own ports, state directory and munge socket."""
    workdir = f"~/.mlops-test-{secrets.token_hex(3)}"
    # Not pytest's tmp dir: it is 0700 and the login user must reach the munge socket.
    state = Path(tempfile.mkdtemp(prefix="mlops-slurm-", dir="/tmp"))
    local = LocalCluster(state, cpus=cpus, accounting=accounting, extra_conf=extra_conf)
    info = local.up()
    session = Cluster(info, workdir)

    def stop() -> None:
        local.down()
        shutil.rmtree(session.home_path(workdir[2:]), ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)

    session.stop = stop
    return session


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with _shared_cluster() as session:
        yield session


@dataclass
class Project:
    """A throwaway git project with one stage, run through ``mlops offload`` like DVC would."""

    path: Path
    stage: str
    cmd: list[str]
    settings: dict[str, object] = field(default_factory=dict)

    def offload_argv(self) -> list[str]:
        return [MLOPS, "offload", self.stage, "--", *self.cmd]

    def start(self, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.offload_argv(),
            cwd=self.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self, env: dict[str, str], timeout: float = 240, options: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MLOPS, "offload", *options, self.stage, "--", *self.cmd],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def identity(self) -> str:
        """The job identity the offload computes for this project (same inputs, same hash)."""
        from machinery.slurm.stage import code_files, expand, identity, read_stage

        spec = read_stage(self.stage, self.path / "dvc.yaml")
        files = set(code_files(self.path)) | set(expand(self.path, spec.deps)) | {"params.yaml"}
        return identity(self.path, spec, self.cmd, sorted(files))

    @property
    def report_path(self) -> Path:
        return self.path / "reports" / "slurm" / f"{self.stage}.json"


def make_project(
    path: Path,
    shell: str,
    *,
    stage: str = "work",
    outs: tuple[str, ...] = ("out",),
    job: dict[str, object] | None = None,
    env_kind: str = "none",
) -> Project:
    """A project whose stage runs ``bash -c SHELL`` with ``data/input.txt`` and params."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "data").mkdir(exist_ok=True)
    (path / "data/input.txt").write_text("hello from the runner\n")
    (path / "params.yaml").write_text(yaml.safe_dump({stage: {"factor": 3}}))
    # A unique token keeps every test's job identity apart.
    cmd = ["bash", "-c", f": {secrets.token_hex(4)}; {shell}"]
    (path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    stage: {
                        "cmd": " ".join(["mlops", "offload", stage, "--", *cmd]),
                        "deps": ["data/input.txt"],
                        "params": [stage],
                        "outs": [*outs, f"reports/slurm/{stage}.json"],
                    }
                }
            }
        )
    )
    settings = {"env": {"kind": env_kind}, "job": {"cpus": 1, "time": "00:10:00", **(job or {})}}
    (path / "slurm.yaml").write_text(yaml.safe_dump(settings))
    (path / ".gitignore").write_text("/data/\n/out/\n/reports/\n")
    shutil.copy(REPO / "requirements.lock", path / "requirements.lock")
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    return Project(path, stage, cmd, settings)


@pytest.fixture
def project_factory(tmp_path: Path) -> Iterator[object]:
    counter = iter(range(100))

    def factory(shell: str, **kwargs: object) -> Project:
        path = tmp_path / f"p{next(counter)}"
        return make_project(path, shell, **kwargs)  # type: ignore[arg-type]

    yield factory


def wait_for_line(
    stream_lines: list[str], needle: str, proc: subprocess.Popen[str], timeout: float
) -> None:
    """Read ``proc.stderr`` into ``stream_lines`` until a line contains ``needle``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"offload ended before {needle!r}: {''.join(stream_lines)}")
        stream_lines.append(line)
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} after {timeout} s: {''.join(stream_lines)}")


@contextmanager
def small_disk(cluster: Cluster, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``1m``) the login user owns, for a workdir that fills up; in /tmp,
    not pytest's 0700 tmp dir, so that the login user reaches it."""
    mount = Path(tempfile.mkdtemp(prefix="mlops-full-", dir="/tmp"))
    mount.chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        shutil.chown(mount, cluster.info.user)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


@dataclass
class TimeoutRun:
    project: Project
    proc: subprocess.Popen[str]


@pytest.fixture(scope="session")
def timeout_job(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeoutRun]:
    """A job with a 1-minute limit, started as early as possible: Slurm only enforces limits
    every ~30 s, so it ends 60–90 s after it starts; the other tests run meanwhile."""
    project = make_project(
        tmp_path_factory.mktemp("timeout") / "p", "echo started; sleep 600", job={"time": "1"}
    )
    proc = project.start(cluster.env())
    yield TimeoutRun(project, proc)
    if proc.poll() is None:
        proc.terminate()
        proc.communicate(timeout=60)
