"""The shell a sweep runs on the cluster: the array's sbatch script, its poll and its
stage-out, rendered as text (``mlops sweep --dry-run`` prints the script)."""

from __future__ import annotations

from machinery.slurm.script import (
    ENV_NAME,
    FINISHED_NAME,
    JOB_PREFIX,
    SCRIPT_NAME,
    SLURM_CALL_TIMEOUT,
    SUBMIT_NAME,
    TIMES_NAME,
    Layout,
    q,
    resource_options,
    timed,
)
from machinery.slurm.settings import SlurmSettings

POINTS_DIR = "points"
# Files of the run dir that belong to the offload, not to the snapshot a task sees.
NOT_SHARED = (
    POINTS_DIR,
    SCRIPT_NAME,
    SUBMIT_NAME,
    ENV_NAME,
    "jobid",
    "leases",
    "sbatch.err",
    FINISHED_NAME,
)


def point_dir(layout: Layout, index: int | str) -> str:
    return f"{layout.run_dir}/{POINTS_DIR}/{index}"


def render_array_script(
    settings: SlurmSettings,
    layout: Layout,
    commands: list[tuple[str, str]],
    points: int,
    max_parallel: int,
    venv: str | None,
    env_vars: dict[str, str],
) -> str:
    """One sbatch, ``--array=0-(N-1)%K``; task i runs the stages in ``points/i``."""
    run = layout.run_dir
    opts = [
        f"--job-name={JOB_PREFIX}{layout.key}",
        f"--output={run}/{POINTS_DIR}/%a/job.log",
        "--open-mode=append",  # a requeued task appends to the log being read
        f"--chdir={run}",
        f"--array=0-{points - 1}%{max_parallel}",
        *resource_options(settings.job),
    ]
    skip = "|".join(NOT_SHARED) + "|.mlops-*"
    stages = " ".join(name for name, _ in commands)
    lines = [
        "#!/bin/bash -l",
        *(f"#SBATCH {o}" for o in opts),
        f"# Written by `mlops sweep`: {points} points of {stages}; identity {layout.key}.",
        "set -eo pipefail",
        f"RUN={q(run)}",
        f'T="$RUN/{POINTS_DIR}/$SLURM_ARRAY_TASK_ID"',
        "# The snapshot (code and deps) is shared by every task, read-only: this task sees it",
        "# through symlinks, file by file, and writes its outs into its own dir.",
        'cd "$RUN"',
        "shopt -s nullglob dotglob",
        "for e in *; do",
        f'  case "$e" in {skip}) continue;; esac',
        '  [ -e "$T/$e" ] || cp -rs "$RUN/$e" "$T/$e"',
        # Files read-only (not dirs: cp -rs gives the task's dirs their modes): a stage that
        # writes through a link fails instead of changing every other point's input.
        '  find "$RUN/$e" -type f -perm -u+w -exec chmod a-w {} + 2>/dev/null || true',
        "done",
        "shopt -u nullglob dotglob",
        'cd "$T"',
        'export PYTHONPATH="$T/src:$T"',
        "export PYTHONUNBUFFERED=1",
        *(f"export {k}={q(v)}" for k, v in env_vars.items()),
        "umask 022",
        *settings.env.setup,
    ]
    if venv is not None:
        lines.append(f"source {q(venv + '/bin/activate')}")
    body = ["(", "  set -e"]
    for name, cmd in commands:
        body += [f"  echo {q(f'[sweep] stage {name}: {cmd}')}", f"  {cmd}"]
    lines += timed([*body, ")"])
    return "\n".join(lines) + "\n"


def render_array_poll(job_id: str, layout: Layout) -> str:
    """Every task's live state in one squeue call (pending tasks come as one ``J_[a-b%K]``
    line); the lease's heartbeat rides along."""
    return (
        f"S=$(timeout {SLURM_CALL_TIMEOUT} squeue -h -t all -j {q(job_id)} -o '%i|%T|%r' 2>&1); "
        'echo "rc=$?"; printf "%s\\n" "$S"; '
        f"mkdir -p {q(layout.run_dir + '/leases')} && touch {q(layout.lease)}"
    )


def render_array_sacct(job_id: str, fmt: str) -> str:
    return (
        f"timeout {SLURM_CALL_TIMEOUT} sacct -j {q(job_id)} -n -P -o JobID,{fmt}; "
        'echo "@@RC@@=$?"'
    )


def render_times(layout: Layout, indexes: list[int]) -> str:
    """Each task's ``.mlops-times`` (its start, end and exit code), for a cluster without
    accounting."""
    return (
        "".join(
            f"echo '@@TIMES@@ {i}'; cat {q(point_dir(layout, i) + '/' + TIMES_NAME)} 2>/dev/null;"
            for i in indexes
        )
        + "true"
    )


def render_tails(layout: Layout, indexes: list[int], lines: int) -> str:
    return "".join(
        f"echo '@@TAIL@@ {i}'; tail -n {lines} {q(point_dir(layout, i) + '/job.log')} 2>/dev/null;"
        for i in indexes
    )


def render_array_stage_out(layout: Layout, paths: list[str]) -> str:
    """``i/out`` paths of the finished points, in one tar; the missing ones named on stderr."""
    names = " ".join(q(p) for p in paths)
    return f"""\
cd {q(layout.run_dir + '/' + POINTS_DIR)}
set --
for o in {names}; do
  if [ -e "$o" ]; then set -- "$@" "$o"; else echo "missing: $o" >&2; fi
done
tar -cf - -- "$@"
"""
