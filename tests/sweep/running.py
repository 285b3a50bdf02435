"""A sweep running in the background while a test does something to its array (drops the SSH
connection, requeues, cancels or preempts a task), and what the tests read back: the array's
job id from the sweep's lines, the experiments in the workspace's git."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.slurm.conftest import wait_for_line
from tests.sweep.project import SweepProject


def submitted(lines: list[str]) -> str:
    """The array job id of the sweep's ``submitted array J`` line."""
    return "".join(lines).split("submitted array ")[1].split()[0]


def exp_commits(project: SweepProject) -> dict[str, str]:
    """Experiment name → its commit (DVC's own bookkeeping refs left out)."""
    out = project.must("git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps/")
    refs = [line.split() for line in out.splitlines()]
    return {r.rsplit("/", 1)[1]: sha for sha, r in refs if r.split("/")[2] not in ("exec", "apply")}


def exp_refs(project: SweepProject) -> list[str]:
    return list(exp_commits(project))


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        wait_for_line(self.lines, needle, self.proc, timeout)

    @property
    def job(self) -> str:
        return submitted(self.lines)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """The sweep's exit code and all it wrote on stderr."""
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.lines) + err


@contextmanager
def running_sweep(project: SweepProject, *argv: str, env: dict[str, str]) -> Iterator[Running]:
    """``mlops sweep ARGV`` started in the background; killed on the way out if still running."""
    run = Running(project.popen(*argv, env=env))
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()
