"""The offload's ``[slurm]`` lines and the job's log share one CI log (stdout and stderr of a CI
job are one stream): a status line starts on a line of its own, and the job's final state comes
after the last line of its log.

Seen before: ``line 00031633 xxxx…[slurm] job 14: RUNNING`` (a poll's chunk of the log ends
inside a line, and the state change was written right after it), and ``job N: FAILED`` printed
when 83,056 of 524,288 lines were out (the final state was said before the rest of the log was
read).
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable

import pytest

from machinery.slurm.logstream import HOLD_LIMIT, LogStream
from tests.slurm.conftest import Cluster, Project

Factory = Callable[..., Project]
LINES = 1 << 19  # ~12 MB of log, written in about a second: several polls' worth
LINE = "line %08d xxxxxxxxxx"
# The job starts with a partial line and a pause (a poll that sees it RUNNING finds a log that
# ends inside a line), then writes the rest in a burst, parts of it to stdout and parts to
# stderr, and fails with its last line not ended: the state turns FAILED while megabytes are
# still to be read.
JOB = (
    "printf 'line 00000000 xxxx'; sleep 1; echo xxxxxx; "
    f"seq -f '{LINE.replace('%08d', '%08g')}' 1 {LINES - 2} | split -l 65536 - part; "
    "k=0; for p in part*; do "
    "if [ $((k % 2)) = 1 ]; then cat $p >&2; else cat $p; fi; k=$((k + 1)); done; "
    f"printf '{LINE}' {LINES - 1}; exit 3"
)


@pytest.mark.integration
def test_status_lines_start_a_line_and_the_final_state_follows_the_whole_log(
    cluster: Cluster, project_factory: Factory
) -> None:
    project = project_factory(JOB)
    proc = subprocess.run(
        project.offload_argv(),
        cwd=project.path,
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, as a CI log is
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    lines = proc.stdout.splitlines()
    glued = [ln for ln in lines if "[slurm]" in ln and not ln.startswith("[slurm]")]
    assert not glued, glued[:3]
    log = [ln for ln in lines if ln.startswith("line ")]
    assert log == [LINE % i for i in range(LINES)], (
        next(
            (i, a, b)
            for i, (a, b) in enumerate(zip(log, (LINE % i for i in range(LINES))))
            if a != b
        )
        if len(log) == LINES
        else f"{len(log)} of {LINES} log lines"
    )
    final = [i for i, ln in enumerate(lines) if re.fullmatch(r"\[slurm\] job \d+: FAILED", ln)]
    assert len(final) == 1, [ln for ln in lines if ln.startswith("[slurm]")]
    last_log_line = max(i for i, ln in enumerate(lines) if ln.startswith("line "))
    assert final[0] > last_log_line, lines[final[0] - 1 : final[0] + 2]


def test_a_status_line_between_two_halves_of_a_line_leaves_the_line_whole() -> None:
    out = io.StringIO()
    logs = LogStream(out)

    def say(text: str) -> None:
        logs.break_line()
        out.write(f"[slurm] {text}\n")

    logs.feed(None, b"one\ntw")
    say("job 1: RUNNING")
    logs.feed(None, "o \u00e9".encode()[:-1])  # a chunk may also end inside a character
    logs.feed(None, "o \u00e9".encode()[-1:] + b"\nthree")
    logs.finish()
    say("job 1: FAILED")
    assert (
        out.getvalue() == "one\n[slurm] job 1: RUNNING\ntwo \u00e9\nthree\n[slurm] job 1: FAILED\n"
    )


def test_a_line_longer_than_the_hold_limit_is_written_and_ended_before_a_status_line() -> None:
    out = io.StringIO()
    logs = LogStream(out)
    logs.feed(None, b"a" * (HOLD_LIMIT + 1))
    assert out.getvalue() == "a" * (HOLD_LIMIT + 1)  # not held forever
    logs.break_line()
    out.write("[slurm] job 1: RUNNING\n")
    logs.feed(None, b"b\n")
    logs.finish()
    assert out.getvalue().splitlines()[1:] == ["[slurm] job 1: RUNNING", "b"]
