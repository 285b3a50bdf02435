"""Right-sizing advice for a cluster job, as the source paper's HPC TaskMaster flags tasks.

Each flag names the ``slurm.yaml`` key to change and a value computed from the job's own
accounting. A figure sacct did not give raises no flag: no advice without data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from machinery.efficiency.settings import EfficiencySettings

MIB = 1 << 20


@dataclass(frozen=True)
class Flag:
    code: str  # stable name, for tests and docs
    finding: str  # what the figures say
    key: str  # the slurm.yaml key to change
    value: str  # the suggested value, as written in slurm.yaml

    def suggestion(self) -> str:
        """The line as written in slurm.yaml (``cpus: 1``); ``section`` says under which key."""
        return f"{self.key.rpartition('.')[2]}: {self.value}"

    @property
    def section(self) -> str:
        """``job`` for ``job.cpus``; empty for a top-level key such as ``transport``."""
        return self.key.rpartition(".")[0]


def suggested_mem(max_rss_bytes: int, headroom: float) -> str:
    """MaxRSS × headroom, rounded up to 100 MiB (Slurm's M is MiB)."""
    mib = max_rss_bytes * headroom / MIB
    return f"{max(100, math.ceil(mib / 100) * 100)}M"


def suggested_time(run_s: float, headroom: float) -> str:
    """run × headroom in whole minutes (Slurm rounds up to minutes anyway), at least 1."""
    minutes = max(1, math.ceil(run_s * headroom / 60))
    return f'"{minutes // 60:02d}:{minutes % 60:02d}:00"'


def _num(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def advise(record: Mapping[str, Any], s: EfficiencySettings) -> list[Flag]:
    """The flags of one job record (``reports/slurm/<stage>.json``); none for a stage run
    here or a record without sacct's figures."""
    if record.get("source") != "sacct":
        return []
    flags: list[Flag] = []
    run = _num(record, "run_time_s")
    cpus = _num(record, "alloc_cpus")
    cpu_s = _num(record, "total_cpu_s")
    eff = _num(record, "cpu_efficiency")
    if cpus and cpus > 1 and eff is not None and eff < s.low_cpu_below and run and cpu_s:
        busy = cpu_s / run  # cores kept busy on average
        want = max(1, math.ceil(round(busy, 1)))
        if want < cpus:
            flags.append(
                Flag(
                    "low-cpu",
                    f"CPU efficiency {100 * eff:.0f} % on {int(cpus)} cores: about {busy:.1f}"
                    " kept busy (serial code on parallel cores?)",
                    "job.cpus",
                    str(want),
                )
            )
    mem = _num(record, "alloc_mem_bytes")
    rss = _num(record, "max_rss_bytes")
    if mem and rss and mem >= s.mem_over_ratio * rss:
        value = suggested_mem(int(rss), s.mem_headroom)
        flags.append(
            Flag(
                "mem-over-ask",
                f"{mem / MIB:.0f} MiB asked, MaxRSS {rss / MIB:.0f} MiB",
                "job.mem",
                value,
            )
        )
    gpus = _num(record, "gpus")
    util = _num(record, "gpu_utilization")
    if gpus and util is not None and util < s.gpu_idle_below:
        flags.append(
            Flag(
                "gpu-idle",
                f"{int(gpus)} GPU(s) allocated, {100 * util:.0f} % used",
                "job.gpus",
                str(math.ceil(round(util * gpus, 1))),
            )
        )
    wait = _num(record, "queue_wait_s")
    if run is not None and (run < s.short_run_s or (wait is not None and run < wait)):
        why = (
            f"ran {run:.0f} s after {wait:.0f} s in the queue"
            if wait is not None and run < wait
            else f"ran {run:.0f} s, under {s.short_run_s:.0f} s"
        )
        flags.append(
            Flag("short-run", f"{why}: cheaper on an ordinary runner", "transport", "none")
        )
    limit = _num(record, "time_limit_s")
    # sacct counts whole seconds: a 0 s run is under one
    if run is not None and limit and limit >= s.time_over_ratio * max(run, 1.0):
        flags.append(
            Flag(
                "time-over-ask",
                f"time limit {limit / 60:.0f} min for a {run:.0f} s run (a long limit waits"
                " longer for a backfill slot)",
                "job.time",
                suggested_time(run, s.time_headroom),
            )
        )
    return flags
