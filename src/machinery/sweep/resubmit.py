"""A rerun of a sweep whose array ended with some tasks not COMPLETED (FAILED, PREEMPTED,
CANCELLED, TIMEOUT, NODE_FAIL, ...): as a single offload submits its job again, the sweep
submits ONE new array over just those points (``sbatch --array=1,4%K`` in the same run dir);
the completed points keep their outs and their experiments.

The run dir's ``arrays`` file is the history: one ``JOBID SPEC`` line per array, oldest first,
so a point's latest task (the one that counts) is in the last array whose spec names it. Its
absence means one array over every point (the ``jobid`` file's).
"""

from __future__ import annotations

from machinery.slurm.script import SCRIPT_NAME, Layout, q
from machinery.sweep.arrayscript import POINTS_DIR
from machinery.sweep.arraystate import task_ids

HISTORY = "arrays"


def spec(indexes: list[int]) -> str:
    """``[1, 4]`` → ``1,4`` (sbatch's --array list; the task ids stay the point indexes)."""
    return ",".join(str(i) for i in sorted(indexes))


def owners(history: str, current: str, points: int) -> dict[int, str]:
    """Point index → the array whose task for it is the latest."""
    owner = {i: current for i in range(points)}
    for line in history.splitlines():
        job, _, indexes = line.strip().partition(" ")
        if not job or not indexes:
            continue
        for i in task_ids(f"{job}_[{indexes}]", job):
            if i < points:
                owner[i] = job
    return owner


def arrays(history: str, current: str, points: int) -> list[tuple[str, str]]:
    """Every array of this identity, oldest first, with its ``--array`` list (its %K aside)."""
    lines = [ln.strip().partition(" ") for ln in history.splitlines()]
    return [(job, idx) for job, _, idx in lines if job and idx] or [(current, f"0-{points - 1}")]


def submissions(history: str, points: int) -> dict[int, int]:
    """Point index → how many arrays ran it (1 without a history)."""
    counts = {i: 0 for i in range(points)}
    lines = [ln.strip().partition(" ") for ln in history.splitlines() if ln.strip()]
    for job, _, indexes in lines:
        for i in task_ids(f"{job}_[{indexes}]", job):
            if i < points:
                counts[i] += 1
    return {i: max(n, 1) for i, n in counts.items()}


def render_history(layout: Layout) -> str:
    return f"cat {q(layout.run_dir + '/' + HISTORY)} 2>/dev/null; true"


def render_resubmit(
    layout: Layout, old: str, indexes: list[int], points: int, max_parallel: int, outs: list[str]
) -> str:
    """Under the workdir's lock (as a first submission): unless a concurrent rerun already
    replaced ``old`` (then attach to its array), drop the points' partial outs, keep their old
    log apart, and submit the new array over them. ``sbatch --array`` on the command line
    overrides the script's own ``#SBATCH --array``."""
    run = q(layout.run_dir)
    lease = f"mkdir -p {run}/leases && touch {q(layout.lease)}"
    dirs = " ".join(str(i) for i in sorted(indexes))
    drop = " ".join(q(o) for o in outs)
    return f"""\
set -eo pipefail
umask 077
exec 9>{q(layout.runs + '/.lock')}
flock 9
cd {run}
if [ "$(cat jobid)" != {q(old)} ]; then
  {lease}
  echo "attach=$(cat jobid)"
  exit 0
fi
[ -s {HISTORY} ] || echo {q(f"{old} 0-{points - 1}")} > {HISTORY}
for i in {dirs}; do
  d={POINTS_DIR}/$i
  ( cd "$d" && rm -rf -- {drop} )
  if [ -e "$d/job.log" ]; then mv "$d/job.log" "$d/job.{old}.log"; fi
done
if ! J=$(sbatch --parsable --array={spec(indexes)}%{max_parallel} {SCRIPT_NAME} 2>sbatch.err); then
  cat sbatch.err >&2
  exit 3
fi
J=${{J%%;*}}
echo "$J" > jobid
echo "$J {spec(indexes)}" >> {HISTORY}
{lease}
echo "submitted=$J"
"""
