"""Figures of a stage that runs here: wall time, CPU time and peak RSS of its process tree.

They change from run to run, so they never go into a DVC output (a fresh clone's ``make run``
must reproduce the committed ``dvc.lock``): each run writes ``reports/stages/<stage>.json``,
ignored by git and by DVC, which CI keeps with the pipeline job's ``reports/`` artifact for the
PR comment. ``mlops measure STAGE -- CMD`` is what a local stage's ``cmd`` in ``dvc.yaml`` goes
through; ``mlops offload`` with transport ``none`` writes the same record for the stage it runs.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

MEASURE_DIR = Path("reports") / "stages"


@dataclass(frozen=True)
class Measurement:
    """One run of a stage here: its CPUs are every CPU this process may use."""

    stage: str
    measured_at: str  # UTC, ISO 8601
    wall_s: float
    cpu_s: float
    cpus: int
    max_rss_bytes: int
    exit_code: int

    def write(self, root: Path) -> Path:
        path = root / MEASURE_DIR / f"{self.stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask on Linux; macOS has no such call."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def maxrss_bytes(ru_maxrss: int, platform: str | None = None) -> int:
    """``ru_maxrss`` is bytes on macOS and KiB on Linux (and the BSDs)."""
    return ru_maxrss if (platform or sys.platform) == "darwin" else ru_maxrss * 1024


def measurement(stage: str, wall: float, usage: object, code: int) -> Measurement:
    """From a child's ``os.wait4`` rusage (children it waited for included)."""
    return Measurement(
        stage=stage,
        measured_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        wall_s=round(wall, 3),
        cpu_s=round(getattr(usage, "ru_utime") + getattr(usage, "ru_stime"), 3),
        cpus=usable_cpus(),
        max_rss_bytes=maxrss_bytes(getattr(usage, "ru_maxrss")),
        exit_code=code,
    )


def run_child(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, resource.struct_rusage, float]:
    """Run ``cmd`` with SIGTERM/SIGINT forwarded to it (a cancelled CI job stops the stage, not
    only this wrapper): its exit code, its process tree's rusage and its wall seconds."""
    from machinery.errors import UserError

    started = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env)
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
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return code, usage, time.monotonic() - started


def run_measured(stage: str, cmd: list[str], root: Path) -> int:
    """Run ``cmd`` (signals forwarded), write its measurement, return its exit code."""
    code, usage, wall = run_child(cmd, root)
    measurement(stage, wall, usage, code).write(root)
    return code


def read_measurements(root: Path) -> dict[str, Measurement]:
    """Every stage's last measurement here; an unreadable file is skipped, not fatal."""
    out: dict[str, Measurement] = {}
    for path in sorted((root / MEASURE_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            out[path.stem] = Measurement(**data)
        except (OSError, ValueError, TypeError) as exc:
            print(f"warning: {path}: skipped ({exc})", file=sys.stderr)
    return out
