"""Slurm accounting figures and the efficiency arithmetic the report shows.

CPU efficiency of a job is TotalCPU ÷ (Elapsed × AllocCPUS). The stage efficiency of the source
platform is E = Σ p·c·Δt ÷ Σ p·Δt over the segments of allocated capacity p (CPUs) used at
utilisation c for Δt seconds: useful work over allocated capacity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

SACCT_FIELDS = (
    "JobIDRaw",
    "State",
    "ExitCode",
    "Reason",
    "Elapsed",
    "TotalCPU",
    "AllocCPUS",
    "MaxRSS",
    "NodeList",
    "Partition",
    "Submit",
    "Start",
    "End",
    "TimelimitRaw",
    "AllocTRES",
    "TRESUsageInAve",
    "ReqMem",  # last: older fixtures without it still parse
)
SACCT_FORMAT = ",".join(SACCT_FIELDS)
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}
SHORT_JOB_S = 600.0  # under this a job is cheaper on an ordinary CI runner
SCHEMA_VERSION = 1
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_duration(text: str) -> float | None:
    """Slurm's ``[D-][HH:]MM:SS[.mmm]`` as seconds; ``None`` when empty or unknown."""
    text = text.strip()
    if not text or text in {"INVALID", "UNLIMITED", "Partition_Limit"}:
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts[-3:]
    return days * 86400 + h * 3600 + m * 60 + s


def parse_size(text: str) -> int | None:
    """``MaxRSS`` such as ``1234K`` or ``12.5M`` as bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)([KMGTP]?)\s*", text)
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_time(text: str) -> datetime | None:
    text = text.strip()
    if not text or text in {"Unknown", "None"}:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_tres(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(",") if "=" in p)


def _asked_mem(tres: dict[str, str], req_mem: str) -> int | None:
    """AllocTRES mem= where memory is a consumable resource; else ReqMem (what the job asked,
    or the node's memory without --mem; older Slurm appends n or c: per node, per CPU)."""
    if "mem" in tres:
        return parse_size(tres["mem"])
    req = req_mem.strip()
    return None if req.endswith("c") else parse_size(req.rstrip("n"))


def cpu_efficiency(total_cpu_s: float, elapsed_s: float, alloc_cpus: int) -> float | None:
    """TotalCPU ÷ (Elapsed × AllocCPUS); ``None`` for a job that had no time or no CPUs."""
    capacity = elapsed_s * alloc_cpus
    if capacity <= 0:
        return None
    return total_cpu_s / capacity


@dataclass(frozen=True)
class Segment:
    """``p`` units of capacity allocated for ``dt`` seconds, used at utilisation ``c``."""

    p: float
    c: float
    dt: float


def stage_efficiency(segments: Iterable[Segment]) -> float | None:
    """E = Σ p·c·Δt ÷ Σ p·Δt; ``None`` when nothing was allocated."""
    work = capacity = 0.0
    for seg in segments:
        work += seg.p * seg.c * seg.dt
        capacity += seg.p * seg.dt
    return work / capacity if capacity > 0 else None


@dataclass(frozen=True)
class JobRecord:
    """The final accounting record of one job (allocation row plus its steps)."""

    job_id: str
    state: str
    exit_code: int
    signal: int
    reason: str
    node: str
    partition: str
    submit: datetime | None
    start: datetime | None
    end: datetime | None
    elapsed_s: float
    total_cpu_s: float | None  # None: unknown (no sacct record), never a made-up 0
    alloc_cpus: int
    max_rss_bytes: int | None
    time_limit_s: float | None
    gpus: int
    gpu_utilization: float | None
    batch_done: bool = False  # the batch step's own record (TotalCPU, MaxRSS) is in
    alloc_mem_bytes: int | None = None  # AllocTRES mem=: what the job asked (None: no --mem)

    @property
    def base_state(self) -> str:
        """``CANCELLED by 1001`` → ``CANCELLED``."""
        return self.state.split()[0] if self.state else ""

    @property
    def queue_wait_s(self) -> float | None:
        if self.submit is None or self.start is None:
            return None
        return max((self.start - self.submit).total_seconds(), 0.0)


def parse_sacct(text: str, job_id: str) -> JobRecord | None:
    """Parse ``sacct -n -P -o SACCT_FORMAT``; ``None`` until the allocation row is there."""
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in text.splitlines() if "|" in line]
    job = next((r for r in rows if r["JobIDRaw"] == job_id), None)
    if job is None:
        return None
    steps = [r for r in rows if r["JobIDRaw"].startswith(job_id + ".")]
    code, _, sig = job["ExitCode"].partition(":")
    rss = [v for v in (parse_size(r["MaxRSS"]) for r in [job, *steps]) if v is not None]
    total_cpu = parse_duration(job["TotalCPU"])
    if not total_cpu:
        total_cpu = sum(parse_duration(r["TotalCPU"]) or 0.0 for r in steps)
    tres = parse_tres(job["AllocTRES"])
    gpus = int(tres.get("gres/gpu", "0") or 0)
    usage = [parse_tres(r["TRESUsageInAve"]).get("gres/gpuutil") for r in steps]
    util = [float(u) / 100 for u in usage if u not in (None, "")]
    limit_min = job["TimelimitRaw"].strip()
    batch_done = any(
        r["JobIDRaw"] == f"{job_id}.batch" and r["State"].split(" ")[0] in TERMINAL for r in steps
    )
    return JobRecord(
        job_id=job_id,
        state=job["State"].strip(),
        exit_code=int(code or 0),
        signal=int(sig or 0),
        reason="" if job["Reason"].strip() == "None" else job["Reason"].strip(),
        node=job["NodeList"].strip(),
        partition=job["Partition"].strip(),
        submit=parse_time(job["Submit"]),
        start=parse_time(job["Start"]),
        end=parse_time(job["End"]),
        elapsed_s=parse_duration(job["Elapsed"]) or 0.0,
        total_cpu_s=total_cpu,
        alloc_cpus=int(job["AllocCPUS"] or 0),
        max_rss_bytes=max(rss) if rss else None,
        time_limit_s=float(limit_min) * 60 if limit_min.isdigit() else None,
        gpus=gpus,
        gpu_utilization=max(util) if util else None,
        batch_done=batch_done,
        alloc_mem_bytes=_asked_mem(tres, job.get("ReqMem", "")),
    )


def is_final(record: JobRecord | None) -> bool:
    """Terminal, with the batch step's figures in (they land ~0.1 s after the job row).

    A job cancelled before it started has no batch step at all.
    """
    if record is None or record.base_state not in TERMINAL:
        return False
    return record.batch_done or record.start is None or record.elapsed_s == 0


@dataclass(frozen=True, kw_only=True)
class SlurmReport:
    """``reports/slurm/<stage>.json``: what the report stage reads (and validates there).

    A plain dataclass, not a pydantic model: transport ``none`` writes one before every local
    training, and pydantic's import and model build would be a third of that command's start."""

    stage: str
    transport: str
    # "sacct" (a Slurm job), "squeue" (accounting unavailable) or "none" (transport none: run
    # here; no figures in the record, so the same inputs give the same bytes)
    source: str
    identity: str
    job_id: str | None
    reattached: bool
    node: str | None
    partition: str | None
    state: str
    reason: str | None
    exit_code: int
    signal: int
    submit_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    queue_wait_s: float | None
    run_time_s: float | None
    time_limit_s: float | None
    alloc_cpus: int | None
    total_cpu_s: float | None
    cpu_efficiency: float | None
    max_rss_bytes: int | None
    gpus: int
    gpu_utilization: float | None
    stage_efficiency: float | None
    short_job: bool
    timings_s: dict[str, float]
    restarts: int = 0  # times Slurm requeued the job (NODE_FAIL, preemption, scontrol requeue)
    note: str | None = None  # e.g. why the figures are not sacct's
    alloc_mem_bytes: int | None = None  # memory allocated (AllocTRES mem=); advice compares it
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        # A float field given an int (a sum of no steps is 0) is written as 0.0, as readers
        # and earlier records have it.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and type(value) is int:
                object.__setattr__(self, f.name, float(value))

    def to_json(self) -> str:
        data = asdict(self)
        # schema_version leads, as readers look for it first.
        data = {"schema_version": data.pop("schema_version"), **data}
        return json.dumps(data, indent=2, default=_json_default) + "\n"

    def write(self, root: Path) -> Path:
        path = root / "reports" / "slurm" / f"{self.stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        # sacct's times are naive local times; squeue's (from epochs) are UTC, written with Z
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def stage_segments(
    alloc_cpus: int, cpu_eff: float | None, run_s: float, timings: dict[str, float]
) -> list[Segment]:
    """The stage's wall time as segments of the capacity it asked for: idle (c = 0) while it
    converts and stages its container image, stages in, waits in the queue, is detected and
    stages out; at the job's CPU efficiency while it runs. So E is below the CPU efficiency by
    exactly the offload's overhead."""
    idle = ("image", "stage_in", "environment", "queue_wait", "detect", "stage_out")
    segments = [Segment(alloc_cpus, 0.0, timings[k]) for k in idle if timings.get(k, 0) > 0]
    return [*segments, Segment(alloc_cpus, cpu_eff or 0.0, run_s)]


def report_from_record(
    record: JobRecord,
    *,
    stage: str,
    transport: str,
    identity: str,
    reattached: bool,
    timings: dict[str, float],
    restarts: int = 0,
    accounting_error: str | None = None,
) -> SlurmReport:
    """The report of a finished job; with ``accounting_error`` the record came from squeue and
    the job's own exit code (no sacct), so CPU and memory figures are unknown."""
    efficiency = None
    if accounting_error is None and record.total_cpu_s is not None:
        efficiency = cpu_efficiency(record.total_cpu_s, record.elapsed_s, record.alloc_cpus)
    segments = stage_segments(record.alloc_cpus, efficiency, record.elapsed_s, timings)
    # squeue's reason on a job that completed is left over from its past (BeginTime after a
    # requeue): it explains nothing.
    reason = record.reason if record.base_state != "COMPLETED" else ""
    return SlurmReport(
        stage=stage,
        transport=transport,
        source="sacct" if accounting_error is None else "squeue",
        identity=identity,
        job_id=record.job_id,
        reattached=reattached,
        node=record.node,
        partition=record.partition or None,
        state=record.base_state,
        reason=reason or None,
        exit_code=record.exit_code,
        signal=record.signal,
        submit_time=record.submit,
        start_time=record.start,
        end_time=record.end,
        queue_wait_s=record.queue_wait_s,
        run_time_s=record.elapsed_s,
        time_limit_s=record.time_limit_s,
        alloc_cpus=record.alloc_cpus,
        total_cpu_s=record.total_cpu_s,
        cpu_efficiency=efficiency,
        max_rss_bytes=record.max_rss_bytes,
        gpus=record.gpus,
        gpu_utilization=record.gpu_utilization,
        stage_efficiency=stage_efficiency(segments) if efficiency is not None else None,
        short_job=record.elapsed_s < SHORT_JOB_S,
        timings_s={k: round(v, 4) for k, v in timings.items()},
        restarts=restarts,
        alloc_mem_bytes=record.alloc_mem_bytes,
        note=None if accounting_error is None else f"accounting unavailable: {accounting_error}",
    )
