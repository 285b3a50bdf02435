"""Free space in the runs dir on the login node: checked before a submission and after a failed
job, with one line that says the disk is full.

A job whose run dir is on a full disk fails with a 0-byte log (Slurm cannot even write it), and
the failed run dir it leaves (kept for its log) holds the space a rerun needs. So: a submission
is refused while the runs dir has less than ``min_free_mb`` free, and after a failed job with
less than that free, the failed run dir (its log already streamed) is removed.
"""

from __future__ import annotations

from machinery.errors import UserError
from machinery.slurm.script import Layout, q

DISK_FULL_RC = 6  # exit code of the stage-in command when the runs dir is too full
FREE_KEY = "free_kb"
FULL_KEY = "disk_full"  # said with that exit code: the submit script's own codes may overlap


def min_free_kb(min_free_mb: float) -> int:
    return int(min_free_mb * 1024)


def render_free(path: str) -> str:
    """``free_kb=N`` (and ``$f``): the space left to the user on the filesystem of ``path``, or
    of its nearest existing parent (the runs dir may not exist yet)."""
    return f"""\
d={q(path)}
while [ ! -d "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
f=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 {{ print $4 }}')
echo "{FREE_KEY}=$f"
"""


def render_check_free(path: str, min_free_mb: float) -> str:
    """Stop (exit ``DISK_FULL_RC``) when ``path`` has less than the minimum free; 0: no check."""
    if min_free_mb <= 0:
        return ""
    limit = min_free_kb(min_free_mb)
    return (
        render_free(path)
        + f'if [ -n "$f" ] && [ "$f" -lt {limit} ]; then\n'
        + f"  echo {FULL_KEY}=1\n"
        + f"  exit {DISK_FULL_RC}\n"
        + "fi\n"
    )


def render_drop_run_dir(layout: Layout) -> str:
    """Remove a failed job's run dir (under the runs lock, as pruning does)."""
    run = q(layout.run_dir)
    return (
        f"exec 9>{q(layout.runs + '/.lock')} && flock 9 && "
        f"{{ chmod -R u+w {run} 2>/dev/null; rm -rf {run}; }}"
    )


def refused(rc: int, text: str) -> bool:
    """The stage-in command stopped for want of space (not the submit script's exit code)."""
    return rc == DISK_FULL_RC and f"{FULL_KEY}=1" in text.splitlines()


def check_stage_in(rc: int, text: str, runs: str, min_free_mb: float) -> None:
    """UserError naming the full runs dir when the stage-in command stopped for want of space
    (a single offload's and a sweep's stage-in say the same)."""
    if refused(rc, text):
        raise UserError(
            full_line(runs, free_kb(text), min_free_mb)
            + ": free space there, or lower min_free_mb in slurm.yaml"
        )


def free_kb(text: str) -> int | None:
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == FREE_KEY and value.strip().isdigit():
            return int(value)
    return None


def is_full(free: int | None, min_free_mb: float) -> bool:
    return free is not None and min_free_mb > 0 and free < min_free_kb(min_free_mb)


def full_line(path: str, free: int | None, min_free_mb: float) -> str:
    left = "an unknown amount" if free is None else _human_kb(free)
    return (
        f"disk full on the login node: {path} has {left} free, "
        f"less than min_free_mb ({min_free_mb:g} MB)"
    )


def _human_kb(kb: int) -> str:
    if kb < 1024:
        return f"{kb} kB"
    if kb < 1024 * 1024:
        return f"{kb / 1024:.1f} MB"
    return f"{kb / 1024 / 1024:.1f} GB"
