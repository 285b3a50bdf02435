"""Slurm: the login node over SSH with the pinned host key (the offload's own connection code),
``sbatch --test-only`` with the configured resources, and the cluster's Python version.

Transport ``local`` runs the same two commands on this host. The settings come from
``slurm.yaml`` and ``MLOPS_SLURM_*`` exactly as the offload reads them.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from typing import Any

from machinery.doctor.model import Check, Env, Failed, NotConfigured, Row, fail, ok, skip
from machinery.errors import UserError
from machinery.slurm.script import resource_options
from machinery.slurm.settings import SlurmSettings, load_settings
from machinery.slurm.transport import LocalTransport, Result, Transport

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 4.0  # two commands after a 5 s connect stay inside the 14 s budget
MIN_PYTHON = (3, 11)
SSH, LOCAL = "Slurm: SSH login", "Slurm: sbatch on this host"
SBATCH, PYTHON = "Slurm: sbatch --test-only", "Slurm: cluster Python"
JOB_VARS = "job.partition/account/time/cpus/mem in slurm.yaml (or MLOPS_SLURM_JOB__*)"


def _connect(settings: SlurmSettings) -> tuple[Transport, str]:
    """The offload's own SSH connection, with short timeouts and no reconnect attempts."""
    from machinery.slurm.ssh import HostKeyRejected, LoginRefused, SshTransport, Unreachable

    quick = settings.model_copy(
        update={
            "connect_timeout": min(settings.connect_timeout, CONNECT_TIMEOUT),
            "reconnect_timeout": 0.0,
        }
    )
    transport = SshTransport(quick)
    where = transport.where
    try:
        transport.connect()
    except HostKeyRejected as exc:
        raise Failed(
            str(exc),
            f"set MLOPS_SLURM_SSH_KNOWN_HOSTS to the login node's key line (ssh-keyscan -p "
            f"{settings.ssh_port} {settings.ssh_host}; compare the fingerprint with your admins)",
        ) from None
    except LoginRefused as exc:
        raise Failed(
            str(exc),
            f"add the public half of MLOPS_SLURM_SSH_KEY to ~/.ssh/authorized_keys of "
            f"{settings.ssh_user or 'the user'} on {settings.ssh_host}",
        ) from None
    except Unreachable as exc:
        raise Failed(str(exc), "check MLOPS_SLURM_SSH_HOST / MLOPS_SLURM_SSH_PORT") from None
    except UserError as exc:
        raise Failed(
            str(exc),
            "check that MLOPS_SLURM_SSH_HOST / _PORT name the login node's sshd, and the key",
        ) from None
    return transport, f"{where}: host key matches the pinned one, key accepted"


def _local() -> tuple[Transport, str]:
    transport = LocalTransport()
    found = transport.run("command -v sbatch && sbatch --version", timeout=COMMAND_TIMEOUT)
    if found.rc != 0:
        raise Failed(
            "transport local but no sbatch on this host",
            "run this job on the login node's runner, or set MLOPS_SLURM_TRANSPORT=ssh",
        )
    return transport, f"sbatch on this host ({found.text.splitlines()[-1].strip()})"


def _sbatch_test(transport: Transport, settings: SlurmSettings) -> str:
    opts = " ".join(shlex.quote(o) for o in resource_options(settings.job))
    result = _run(transport, f"sbatch --test-only --output=/dev/null --wrap=true {opts}")
    said = result.err.decode(errors="replace").strip()
    if result.rc != 0:
        reason = result.error_line.removeprefix("sbatch: error: ")
        raise Failed(f"Slurm refused the job: {reason}", f"fix {JOB_VARS}")
    first = said.splitlines()[0].removeprefix("sbatch: ") if said else "accepted"
    return f"{' '.join(resource_options(settings.job))}: {first}"


def _python(transport: Transport, settings: SlurmSettings) -> str:
    python = settings.env.python
    code = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
    result = _run(transport, f"{shlex.quote(python)} -c {shlex.quote(code)}")
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", result.text.strip())
    if result.rc != 0 or not m:
        raise Failed(
            f"{python} does not run on the cluster: {result.error_line}",
            "set env.python in slurm.yaml (MLOPS_SLURM_ENV__PYTHON) to a Python 3.11+",
        )
    if (int(m.group(1)), int(m.group(2))) < MIN_PYTHON:
        raise Failed(
            f"{python} on the cluster is {m.group(0)}, the pipeline needs 3.11+",
            "set env.python in slurm.yaml (MLOPS_SLURM_ENV__PYTHON) to a Python 3.11+",
        )
    return f"{python} is {m.group(0)}"


def _run(transport: Transport, command: str) -> Result:
    from machinery.slurm.transport import ConnectionLost, RemoteTimeout

    try:
        return transport.run(command, timeout=COMMAND_TIMEOUT)
    except (RemoteTimeout, ConnectionLost, OSError, EOFError) as exc:
        raise Failed(
            f"no answer from the cluster in {COMMAND_TIMEOUT:.0f} s ({type(exc).__name__})",
            "check that slurmctld answers on the login node (sinfo)",
        ) from None


def _step(name: str, action: Callable[[Transport, SlurmSettings], str], *on: Any) -> Row:
    started = time.monotonic()
    try:
        row = ok(name, action(*on))
    except Failed as exc:
        row = fail(name, exc.detail, exc.fix)
    return Row(row.name, row.status, row.detail, row.fix, time.monotonic() - started)


def run(env: Env) -> list[Row]:
    # The settings class reads os.environ and slurm.yaml itself: the very code the offload runs.
    try:
        settings = load_settings()
    except UserError as exc:
        raise Failed(str(exc), "fix slurm.yaml or the MLOPS_SLURM_* variable it names") from None
    if settings.transport == "none":
        raise NotConfigured("MLOPS_SLURM_TRANSPORT not set: train runs on the CI runner")
    login = SSH if settings.transport == "ssh" else LOCAL
    started = time.monotonic()
    try:
        transport, detail = _connect(settings) if settings.transport == "ssh" else _local()
    except Failed as exc:
        not_run = "not run: no way to the cluster"
        return [
            Row(login, "fail", exc.detail, exc.fix, time.monotonic() - started),
            skip(SBATCH, not_run),
            skip(PYTHON, not_run),
        ]
    try:
        rows = [Row(login, "ok", detail, seconds=time.monotonic() - started)]
        rows.append(_step(SBATCH, _sbatch_test, transport, settings))
        if settings.env.kind in ("apptainer", "charliecloud"):
            kind = settings.env.kind
            rows.append(skip(PYTHON, f"env.kind {kind}: Python comes from the image"))
        else:
            rows.append(_step(PYTHON, _python, transport, settings))
        return rows
    finally:
        transport.close()


CHECKS = [Check("Slurm", 14.0, run)]
