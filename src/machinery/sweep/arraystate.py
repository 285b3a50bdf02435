"""The state of every task of one array, from squeue's lines and sacct's rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from machinery.slurm.accounting import SACCT_FIELDS, TERMINAL, JobRecord, is_final, parse_sacct
from machinery.slurm.polling import REQUEUED

ACTIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED"}


def task_ids(spec: str, job_id: str) -> list[int]:
    """``123_4`` → [4]; ``123_[4-6,9%2]`` → [4, 5, 6, 9]; another job's line → []."""
    head, sep, rest = spec.partition("_")
    if not sep or head != job_id:
        return []
    rest = rest.strip("[]").split("%")[0]
    out: list[int] = []
    for part in rest.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if m:
            out.extend(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return out


@dataclass
class ArrayState:
    points: int
    states: dict[int, str] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    started: set[int] = field(default_factory=set)
    requeues: dict[int, int] = field(default_factory=dict)  # per task, as a single job's

    def update_squeue(self, text: str, job_id: str) -> list[int]:
        """The tasks' states; returns the ones requeued since the last call (a task that ran
        is pending again: scontrol requeue, a node failure, preemption with requeue)."""
        requeued: list[int] = []
        for line in text.splitlines():
            spec, _, rest = line.partition("|")
            state, _, reason = rest.partition("|")
            for i in task_ids(spec.strip(), job_id):
                base = state.split(" ")[0]
                if base in ("RUNNING", "COMPLETING"):
                    self.started.add(i)
                elif i in self.started and base in REQUEUED:
                    self.started.discard(i)
                    self.requeues[i] = self.requeues.get(i, 0) + 1
                    requeued.append(i)
                self.states[i] = base
                self.reasons[i] = "" if reason in ("None", "") else reason
        return requeued

    def count(self, which: str) -> int:
        if which == "done":
            return sum(s == "COMPLETED" for s in self.states.values())
        if which == "failed":
            return sum(s in TERMINAL and s != "COMPLETED" for s in self.states.values())
        if which == "running":
            return sum(s in ACTIVE_RUNNING for s in self.states.values())
        return self.points - sum(self.count(k) for k in ("done", "failed", "running"))

    def progress(self) -> str:
        return (
            f"{self.count('done')}/{self.points} done, {self.count('running')} running, "
            f"{self.count('pending')} pending, {self.count('failed')} failed"
        )

    @property
    def final(self) -> bool:
        return len(self.states) == self.points and all(s in TERMINAL for s in self.states.values())


def parse_array_sacct(text: str, job_id: str) -> dict[int, JobRecord]:
    """``sacct -o JobID,<SACCT_FORMAT>`` rows grouped by task (``J_i``, ``J_i.batch``, …); each
    task's record parsed as a single job's, keyed by its own JobIDRaw."""
    groups: dict[int, list[list[str]]] = {}
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) != len(SACCT_FIELDS) + 1:
            continue
        task = cols[0].split(".")[0]
        ids = task_ids(task, job_id)
        if len(ids) == 1 and "[" not in task:
            groups.setdefault(ids[0], []).append(cols[1:])
    records: dict[int, JobRecord] = {}
    for i, rows in groups.items():
        alloc = next((r for r in rows if "." not in r[0]), None)
        if alloc is None:
            continue
        record = parse_sacct("\n".join("|".join(r) for r in rows), alloc[0])
        if record is not None:
            records[i] = record
    return records


def all_final(records: dict[int, JobRecord], points: int) -> bool:
    return len(records) == points and all(is_final(r) for r in records.values())


def states_from_sacct(state: ArrayState, text: str, job_id: str) -> None:
    """When squeue has forgotten the array (MinJobAge), sacct's allocation rows say how each
    task ended (a range row covers tasks cancelled before they started)."""
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) != len(SACCT_FIELDS) + 1 or "." in cols[0]:
            continue
        for i in task_ids(cols[0], job_id):
            state.states[i] = cols[2].split(" ")[0]
            reason = cols[4].strip()
            state.reasons[i] = "" if reason == "None" else reason
