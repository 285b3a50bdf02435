"""Transport ``none``: run the stage here, and still write the figures the report shows."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from machinery.errors import UserError
from machinery.slurm.accounting import (
    SHORT_JOB_S,
    Segment,
    SlurmReport,
    cpu_efficiency,
    stage_efficiency,
)


class CommandFailed(UserError):
    exit_code = 1


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask on Linux; macOS has no such call."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def maxrss_bytes(ru_maxrss: int, platform: str | None = None) -> int:
    """``ru_maxrss`` is bytes on macOS and KiB on Linux (and the BSDs)."""
    return ru_maxrss if (platform or sys.platform) == "darwin" else ru_maxrss * 1024


def run_here(stage: str, cmd: list[str], root: Path, identity: str) -> SlurmReport:
    """Run ``cmd`` in ``root``; wall time, CPU time and max RSS come from the child's rusage."""
    cpus = usable_cpus()
    start = datetime.now(timezone.utc)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, cwd=root)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]}: command not found") from None

    def forward(signum: int, frame: FrameType | None) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime
    efficiency = cpu_efficiency(cpu, wall, cpus)
    code = proc.returncode
    state = "COMPLETED" if code == 0 else ("CANCELLED" if code < 0 else "FAILED")
    report = SlurmReport(
        stage=stage,
        transport="none",
        source="rusage",
        identity=identity,
        job_id=None,
        reattached=False,
        node=socket.gethostname(),
        partition=None,
        state=state,
        reason=None,
        exit_code=max(code, 0),
        signal=-code if code < 0 else 0,
        submit_time=start,
        start_time=start,
        end_time=datetime.now(timezone.utc),
        queue_wait_s=0.0,
        run_time_s=wall,
        time_limit_s=None,
        alloc_cpus=cpus,
        total_cpu_s=cpu,
        cpu_efficiency=efficiency,
        max_rss_bytes=maxrss_bytes(usage.ru_maxrss),
        gpus=0,
        gpu_utilization=None,
        stage_efficiency=stage_efficiency([Segment(cpus, efficiency or 0.0, wall)]),
        short_job=wall < SHORT_JOB_S,
        timings_s={"run": round(wall, 4), "total": round(wall, 4)},
    )
    report.write(root)
    if code != 0:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        raise CommandFailed(f"stage {stage}: {' '.join(cmd)} failed ({how})")
    return report
