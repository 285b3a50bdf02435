"""A real single-node Slurm with accounting and an SSH login node, as plain processes.

munged → mariadbd → slurmdbd → slurmctld → slurmd, plus sshd for one unprivileged user, all
on free 127.0.0.1 ports with their state under one directory and stopped by PID. The test
fixtures and ``make cluster-up`` use the same code, so what a user tries on a laptop is what CI
tests. Needs root: slurmd starts jobs as the submitting user.

``accounting=False`` leaves out mariadbd and slurmdbd (``accounting_storage/none``, as on
clusters without slurmdbd); ``extra_conf`` appends lines to slurm.conf (more partitions,
preemption). Several clusters can run at once: each has its own ports, state and munge socket.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import string
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from machinery.errors import UserError

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_USER = "mlopsci"
INFO_FILE = "cluster.json"
PIDS_FILE = "pids.json"
ENV_FILE = "env"
DEFAULT_GPUS = 2  # count-only GPUs (no device): enough for a GPU job and a too-many request


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running local cluster: what the offload settings need."""

    state_dir: str
    host: str
    ssh_port: int
    user: str
    key_file: str
    known_hosts: str
    slurm_conf: str
    partition: str = "debug"

    def env(self) -> dict[str, str]:
        """``MLOPS_SLURM_*`` variables pointing the ssh transport at this cluster."""
        return {
            "MLOPS_SLURM_TRANSPORT": "ssh",
            "MLOPS_SLURM_SSH_HOST": self.host,
            "MLOPS_SLURM_SSH_PORT": str(self.ssh_port),
            "MLOPS_SLURM_SSH_USER": self.user,
            "MLOPS_SLURM_SSH_KEY_FILE": self.key_file,
            "MLOPS_SLURM_SSH_KNOWN_HOSTS": self.known_hosts,
        }

    def local_env(self) -> dict[str, str]:
        """Variables for the ``local`` transport (sbatch on this host)."""
        return {
            "MLOPS_SLURM_TRANSPORT": "local",
            "SLURM_CONF": self.slurm_conf,
        }

    @classmethod
    def load(cls, state_dir: Path) -> ClusterInfo:
        path = state_dir / INFO_FILE
        if not path.is_file():
            raise UserError(f"{state_dir}: no local cluster there (run 'make cluster-up')")
        return cls(**json.loads(path.read_text()))


def free_port() -> int:
    """A port free on every address: slurmctld and slurmdbd bind 0.0.0.0 whatever is set."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _is_alive(pid: int) -> bool:
    """Running and not a zombie (daemons linger as zombies until PID 1 reaps them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = ""
    if log is not None and log.is_file():
        tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
    raise RuntimeError(f"local cluster: {what} not ready after {timeout:.0f} s. {tail}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            # Slurm drains a node that reports less memory than configured: stay below it.
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 1024


def ensure_user(name: str) -> pwd.struct_passwd:
    """The unprivileged login user; ``usermod -p '*'`` unlocks it under ``UsePAM no``."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        entry = pwd.getpwnam(name)
    subprocess.run(["usermod", "-p", "*", name], check=True)
    Path(entry.pw_dir).mkdir(mode=0o755, exist_ok=True)
    os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    return entry


class LocalCluster:
    """Start and stop the daemons; ``up`` is about 3 s, ``down`` about 2 s.

    ``extra_conf`` lines go at the end of slurm.conf, after the node and the default partition
    ``debug``; ``${host}`` in them is this node's name (e.g. ``PartitionName=urgent
    Nodes=${host} PriorityTier=10``).
    """

    def __init__(
        self,
        state_dir: Path,
        user: str = DEFAULT_USER,
        cpus: int | None = None,
        *,
        accounting: bool = True,
        extra_conf: Sequence[str] = (),
        gpus: int = DEFAULT_GPUS,
    ):
        self.state = state_dir.resolve()
        self.user = user
        self.cpus = cpus or os.cpu_count() or 1
        self.accounting = accounting
        self.extra_conf = list(extra_conf)
        self.gpus = gpus
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # --- public -------------------------------------------------------------------------

    def up(self) -> ClusterInfo:
        if os.geteuid() != 0:
            raise UserError("the local cluster needs root (slurmd runs jobs as their user)")
        daemons = ("munged", "mariadbd", "slurmdbd") if self.accounting else ("munged",)
        for tool in (*daemons, "slurmctld", "slurmd", "sshd"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                raise UserError(f"{tool} is not installed (run 'make system-deps' as root)")
        if (self.state / PIDS_FILE).is_file():
            self.down()
        self._prepare_dirs()
        ensure_user(self.user)
        values = self._values()
        try:
            self._start_munge()
            if self.accounting:
                self._start_mariadb(values)
            self._render(values)
            self._start_slurm(values)
            info = self._start_sshd(values)
        except BaseException:
            self.down()
            raise
        (self.state / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
        exports = {**info.env(), "SLURM_CONF": info.slurm_conf}
        (self.state / ENV_FILE).write_text(
            "".join(f"export {k}='{v}'\n" for k, v in exports.items())
        )
        return info

    def down(self) -> None:
        """SIGTERM every daemon we started, newest first; SIGKILL what is left after 10 s."""
        pids_file = self.state / PIDS_FILE
        if not pids_file.is_file():
            return
        entries: list[list[object]] = json.loads(pids_file.read_text())
        self._cancel_jobs()
        for _name, pid in reversed(entries):
            assert isinstance(pid, int)
            self._stop(pid)
        # A job step outlives slurmd: stop what is left of this cluster's jobs.
        for pid in self._stray_stepds():
            self._stop(pid, timeout=2.0)
        pids_file.unlink()
        (self.state / INFO_FILE).unlink(missing_ok=True)

    def _slurm_env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.state / "etc/slurm.conf")}

    def _cancel_jobs(self, timeout: float = 10.0) -> None:
        """Cancel every job and give their steps a moment to end, while slurmd still runs."""
        env = self._slurm_env()

        def queue() -> list[str]:
            try:
                out = subprocess.run(
                    ["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=5
                )
            except (OSError, subprocess.TimeoutExpired):
                return []
            return out.stdout.split() if out.returncode == 0 else []

        jobs = queue()
        if not jobs:
            return
        subprocess.run(["scancel", *jobs], env=env, capture_output=True, timeout=10)
        deadline = time.monotonic() + timeout
        while queue() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _stray_stepds(self) -> list[int]:
        """slurmstepd processes started by this cluster's slurmd (they carry its SLURM_CONF)."""
        marker = f"SLURM_CONF={self.state / 'etc/slurm.conf'}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if not (proc / "cmdline").read_bytes().startswith(b"slurmstepd"):
                    continue
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    # --- steps --------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        # munged and sbatch (run as the login user) need o+x on every directory of the path.
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)
        for parent in self.state.parents:
            if not parent.stat().st_mode & 0o001:
                raise UserError(
                    f"{parent}: the cluster's login user cannot pass through it (chmod o+x), "
                    "so it cannot reach the munge socket; pick another --dir"
                )
        for sub in ("etc", "run", "log", "slurmctld", "slurmd", "munge", "munge/run", "ssh"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
            (self.state / sub).chmod(0o755)
        (self.state / "munge/lib").mkdir(mode=0o700, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def _values(self) -> dict[str, str]:
        return {
            "host": socket.gethostname().split(".")[0],
            "state": str(self.state),
            "munge_socket": str(self.state / "munge/run/munge.socket"),
            "ctld_port": str(free_port()),
            "slurmd_port": str(free_port()),
            "dbd_port": str(free_port()),
            "db_port": str(free_port()),
            "ssh_port": str(free_port()),
            "db_password": secrets.token_hex(12),
            "cpus": str(self.cpus),
            "gpus": str(self.gpus),
            "last_gpu": str(self.gpus - 1),
            "memory_mb": str(_memory_mb()),
            "user": self.user,
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log = (self.state / "log" / f"{name}.out").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the shell that ran `make` must not stop it
            env={**os.environ, **(env or {})},
        )
        log.close()
        self._procs[proc.pid] = proc
        pids_file = self.state / PIDS_FILE
        entries = json.loads(pids_file.read_text()) if pids_file.is_file() else []
        entries.append([name, proc.pid])
        pids_file.write_text(json.dumps(entries))
        return proc.pid

    def _check_running(self, name: str, pid: int) -> Callable[[], bool]:
        def alive() -> bool:
            if not _is_alive(pid):
                raise RuntimeError(
                    f"local cluster: {name} exited; see {self.state / 'log' / name}.out"
                )
            return True

        return alive

    def _start_munge(self) -> None:
        munge = self.state / "munge"
        key = munge / "munge.key"
        if not key.is_file():
            subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
        key.chmod(0o600)
        sock = munge / "run/munge.socket"
        pid = self._spawn(
            "munged",
            [
                "munged",
                "-F",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'lib/munged.seed'}",
                f"--log-file={self.state / 'log/munged.log'}",
            ],
        )
        alive = self._check_running("munged", pid)
        _wait("munged", lambda: alive() and sock.exists(), 10, self.state / "log/munged.out")

    def _start_mariadb(self, values: dict[str, str]) -> None:
        data = self.state / "mysql/data"
        sock = self.state / "mysql/mysqld.sock"
        if not (data / "mysql").is_dir():
            data.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={data}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        pid = self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--port={values['db_port']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={self.state / 'run/mariadbd.pid'}",
                "--innodb-lock-wait-timeout=900",
            ],
        )
        alive = self._check_running("mariadbd", pid)
        port = int(values["db_port"])
        _wait("mariadbd", lambda: alive() and _port_open(port), 30, self.state / "log/mariadbd.out")
        password = values["db_password"]
        sql = (
            "CREATE OR REPLACE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
            "FLUSH PRIVILEGES;"
        ).format(pw=password)
        subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", sql],
            check=True,
            capture_output=True,
        )

    def _render(self, values: dict[str, str]) -> None:
        etc = self.state / "etc"

        def render(name: str, extra: dict[str, str] | None = None) -> str:
            return string.Template((TEMPLATES / name).read_text()).substitute(
                values, **(extra or {})
            )

        kind = "slurmdbd" if self.accounting else "none"
        extra_conf = "".join(
            string.Template(ln).substitute(values) + "\n" for ln in self.extra_conf
        )
        parts = {
            "accounting": render(f"accounting-{kind}.conf").rstrip("\n"),
            "extra_conf": extra_conf,
        }
        (etc / "slurm.conf").write_text(render("slurm.conf", parts))
        (etc / "sshd_config").write_text(render("sshd_config"))
        if self.accounting:
            (etc / "slurmdbd.conf").write_text(render("slurmdbd.conf"))
            (etc / "slurmdbd.conf").chmod(0o600)  # slurmdbd refuses a readable password file
        (etc / "slurm.conf").chmod(0o644)
        (etc / "plugstack.conf").write_text("")
        # slurmd reads gres.conf from slurm.conf's directory.
        (etc / "gres.conf").write_text(render("gres.conf"))
        # A GPU's File must be a character device: /dev/null's (1, 3), made here (we are root).
        (self.state / "dev").mkdir(exist_ok=True)
        for index in range(self.gpus):
            device = self.state / "dev" / f"gpu{index}"
            if not device.exists():
                os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))

    def _start_slurm(self, values: dict[str, str]) -> None:
        conf = self.state / "etc/slurm.conf"
        env = {"SLURM_CONF": str(conf)}
        logs = self.state / "log"
        if self.accounting:
            pid = self._spawn("slurmdbd", ["slurmdbd", "-D"], env)
            alive = self._check_running("slurmdbd", pid)
            dbd = int(values["dbd_port"])
            _wait("slurmdbd", lambda: alive() and _port_open(dbd), 30, logs / "slurmdbd.log")
        pid = self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)], env)
        alive = self._check_running("slurmctld", pid)
        ctld = int(values["ctld_port"])
        _wait("slurmctld", lambda: alive() and _port_open(ctld), 30, logs / "slurmctld.log")
        pid = self._spawn("slurmd", ["slurmd", "-D", "-f", str(conf)], env)
        alive = self._check_running("slurmd", pid)

        def node_idle() -> bool:
            alive()
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%T"],
                capture_output=True,
                text=True,
                env={**os.environ, **env},
            ).stdout
            return out.strip().startswith("idle")

        _wait("slurmd", node_idle, 30, logs / "slurmd.log")

    def _start_sshd(self, values: dict[str, str]) -> ClusterInfo:
        ssh = self.state / "ssh"
        host_key = ssh / "ssh_host_ed25519_key"
        client_key = ssh / "client_ed25519"
        for key in (host_key, client_key):
            if not key.is_file():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlops", "-f", str(key)],
                    check=True,
                )
        authorized = ssh / "authorized_keys"
        authorized.write_text((ssh / "client_ed25519.pub").read_text())
        authorized.chmod(0o644)
        port = int(values["ssh_port"])
        cfg = self.state / "etc/sshd_config"
        pid = self._spawn(
            "sshd", ["/usr/sbin/sshd", "-D", "-f", str(cfg), "-E", str(self.state / "log/sshd.log")]
        )
        alive = self._check_running("sshd", pid)
        _wait("sshd", lambda: alive() and _port_open(port), 10, self.state / "log/sshd.log")
        host_pub = (ssh / "ssh_host_ed25519_key.pub").read_text().split()
        return ClusterInfo(
            state_dir=str(self.state),
            host="127.0.0.1",
            ssh_port=port,
            user=self.user,
            key_file=str(client_key),
            known_hosts=f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}",
            slurm_conf=str(self.state / "etc/slurm.conf"),
        )

    def _stop(self, pid: int, timeout: float = 10.0) -> None:
        proc = self._procs.pop(pid, None)
        if not _is_alive(pid):
            if proc is not None:
                proc.wait()
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not _is_alive(pid):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc is not None:
            proc.wait()
