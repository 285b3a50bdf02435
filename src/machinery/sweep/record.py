"""``reports/sweep.json``: what one sweep ran and got, read by ``--best``, the report and the
PR comment. The experiments themselves live in DVC; this is the index over them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from machinery.errors import UserError

RECORD = Path("reports/sweep.json")
SCHEMA_VERSION = 1


@dataclass
class PointResult:
    index: int
    name: str  # the DVC experiment's name
    params: dict[str, Any]  # the grid keys that apply to this point
    state: str  # COMPLETED, FAILED, CANCELLED, ...
    reason: str = ""
    exit_code: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)
    task_id: str | None = None  # JobID_TaskID in sacct
    elapsed_s: float | None = None
    total_cpu_s: float | None = None
    alloc_cpus: int | None = None
    cpu_efficiency: float | None = None
    experiment: str | None = None  # the exp ref in the workspace's git
    restarts: int = 0  # times Slurm requeued the point's task
    resubmits: int = 0  # times a rerun submitted the point again (its task had not completed)

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and self.experiment is not None


@dataclass
class SweepRecord:
    stages: list[str]
    transport: str
    max_parallel: int
    grid: dict[str, list[Any]]
    points: list[PointResult]
    identity: str = ""
    job_id: str | None = None  # the array's job id
    reattached: bool = False
    resubmitted: list[int] = field(default_factory=list)  # points this run submitted again
    # Every array of this identity, oldest first: {"job_id": "8", "array": "0-5"}, then
    # {"job_id": "12", "array": "1,4"} after a rerun resubmitted two points.
    arrays: list[dict[str, str]] = field(default_factory=list)
    wall_s: float | None = None  # first submit (or start here) to the last point's end
    alloc_cpu_s: float | None = None  # Σ AllocCPUS × Elapsed over the tasks
    total_cpu_s: float | None = None  # Σ TotalCPU over the tasks
    efficiency: float | None = None  # E over the array = used ÷ allocated CPU time
    timings_s: dict[str, float] = field(default_factory=dict)
    # mlops sweep --push: where the experiments went (machinery.sweep.keep.Kept), None if not
    # pushed (a sweep on a developer's machine, whose experiments stay in its own git).
    kept: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def write(self, root: Path) -> Path:
        path = root / RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path

    @property
    def failed(self) -> list[PointResult]:
        return [p for p in self.points if not p.ok]


def load_record(root: Path) -> SweepRecord:
    path = root / RECORD
    if not path.is_file():
        raise UserError(f"{RECORD}: no sweep here yet (run mlops sweep STAGE -S ...)")
    try:
        data = json.loads(path.read_text())
        points = [PointResult(**p) for p in data.pop("points")]
        return SweepRecord(points=points, **data)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{RECORD}: not a sweep record ({exc})") from None
