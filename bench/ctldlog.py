"""Slurm's own side of a bench run, to the millisecond, from the local cluster's slurmctld.log.

sacct's Submit/Start/End have one-second steps, too coarse to tell a 0.2 s queue wait from a
0.9 s one; slurmctld logs each submission, each allocation (one line per array task) and each
completion with milliseconds. Used by bench/sweep.py to show when the array's tasks started
(all in one scheduler pass or not) next to the single jobs' queue waits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

LINE = re.compile(r"^\[(?P<ts>[0-9T:.-]+)\] (?P<msg>.*)$")
SUBMIT = re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+) ")
# "sched: Allocate JobId=20_0(21)" by the main scheduler, "Started JobId=..." by backfill.
START = re.compile(r"(?:sched: Allocate|Started) JobId=(\d+)(?:_(\d+))?")
END = re.compile(r"_job_complete: JobId=(\d+)(?:_(\d+))?(?:\(\d+\))? done")


@dataclass
class Job:
    submit: float | None = None
    starts: dict[int, float] = field(default_factory=dict)  # task (-1: not an array) → epoch
    ends: dict[int, float] = field(default_factory=dict)

    def queue_wait(self) -> float | None:
        if self.submit is None or not self.starts:
            return None
        return min(self.starts.values()) - self.submit

    def start_spread(self) -> float:
        """First to last task start: 0 when one scheduler pass started them all."""
        return max(self.starts.values()) - min(self.starts.values()) if self.starts else 0.0

    def runs(self) -> list[float]:
        return [self.ends[t] - s for t, s in self.starts.items() if t in self.ends]

    def submit_to_last_end(self) -> float | None:
        if self.submit is None or not self.ends:
            return None
        return max(self.ends.values()) - self.submit


def read(path: Path) -> dict[str, Job]:
    jobs: dict[str, Job] = {}
    for raw in path.read_text(errors="replace").splitlines():
        m = LINE.match(raw)
        if m is None:
            continue
        ts = datetime.fromisoformat(m["ts"]).timestamp()
        msg = m["msg"]
        if s := SUBMIT.search(msg):
            jobs.setdefault(s[1], Job()).submit = ts
        elif s := START.search(msg):
            jobs.setdefault(s[1], Job()).starts[int(s[2]) if s[2] else -1] = ts
        elif s := END.search(msg):
            jobs.setdefault(s[1], Job()).ends[int(s[2]) if s[2] else -1] = ts
    return jobs


def summary(jobs: dict[str, Job], array_id: str) -> dict[str, object]:
    """The array's figures and, for the single jobs submitted after it (the offloads'), queue
    wait and run."""
    array = jobs.get(array_id, Job())
    after = array.submit or 0.0
    singles = [
        j
        for jid, j in jobs.items()
        if jid != array_id and -1 in j.starts and (j.submit or 0.0) > after
    ]
    waits = [w for j in singles if (w := j.queue_wait()) is not None]
    runs = [r for j in singles for r in j.runs()]

    def r3(values: list[float]) -> list[float]:
        return [round(v, 3) for v in values]

    return {
        "array_queue_wait_s": round(array.queue_wait() or 0.0, 3),
        "array_tasks_started": len(array.starts),
        "array_start_spread_s": round(array.start_spread(), 3),
        "array_task_run_s": r3(sorted(array.runs())),
        "array_submit_to_last_end_s": round(array.submit_to_last_end() or 0.0, 3),
        "single_queue_wait_s": r3(waits),
        "single_run_s": r3(runs),
    }
