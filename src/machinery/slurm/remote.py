"""The small commands the offload runs on the login node: probe, stage in, poll, cancel, release,
account, stage out. Rendered as text like the job script, so a test can read them."""

from __future__ import annotations

from machinery.slurm.diskspace import render_check_free, render_free
from machinery.slurm.script import (
    FINISHED_NAME,
    JOB_PREFIX,
    LOG_CHUNK,
    SLURM_CALL_TIMEOUT,
    SUBMIT_NAME,
    TIMES_NAME,
    Layout,
    q,
    remote_path,
)

TAIL_MARK = "@@TAIL@@"


def render_probe(
    workdir: str, key: str, nonce: str = "probe", hashes: list[str] | None = None
) -> str:
    """One round trip: $HOME, the job already submitted under this identity, if any (this run
    takes a lease on it at once), and which of the large deps (by sha256) the cluster's cache
    already holds."""
    run = f"{remote_path(workdir)}/runs/{q(key)}"
    have = ""
    if hashes:
        cache = f"{remote_path(workdir)}/cache"
        have = (
            f"for h in {' '.join(q(h) for h in hashes)}; do "
            f'[ -f {cache}/"$h" ] && echo "have=$h"; done; true\n'
        )
    return f"""\
echo "home=$HOME"
if [ -s {run}/jobid ]; then
  J=$(cat {run}/jobid)
  echo "job=$J"
  mkdir -p {run}/leases && touch {run}/leases/{q(nonce)}
  S=$(timeout {SLURM_CALL_TIMEOUT} squeue -h -t all -j "$J" -o '%T|%j' 2>/dev/null | head -n1)
  echo "squeue=$S"
  # sacct only for a job the controller forgot: it hangs when slurmdbd does.
  if [ -z "$S" ]; then
    echo "sacct=$(timeout {SLURM_CALL_TIMEOUT} sacct -n -X -P -j "$J" -o State,JobName \
2>/dev/null | head -n1)"
  fi
fi
{have}"""


def render_stage_in(layout: Layout, min_free_mb: float = 0.0) -> str:
    """Unpack the snapshot (tar on stdin) into a private staging dir, then submit. The staging
    dir goes on any failure (a full quota stays full otherwise); on success it became the run
    dir or was dropped for a concurrent run's job. Nothing is unpacked while the runs dir has
    less than ``min_free_mb`` free (exit ``DISK_FULL_RC``)."""
    stage = q(layout.staging_dir)
    return (
        "umask 077\n"
        f"trap 'rm -rf {stage}' EXIT\n"
        "trap 'exit 129' HUP INT TERM PIPE\n"
        f"{render_check_free(layout.runs, min_free_mb)}"
        f"mkdir -p {q(layout.runs)} && rm -rf {stage} && mkdir {stage}\n"
        f"tar -x -C {stage} || exit 4\n"
        f"bash --noprofile --norc {stage}/{SUBMIT_NAME}\n"
    )


def render_poll(
    job_id: str,
    layout: Layout,
    offset: int,
    squeue: bool = True,
    call_timeout: int = SLURM_CALL_TIMEOUT,
) -> str:
    """Live state from squeue (sacct lags), the log's size and its bytes from ``offset`` on, in
    one call; the lease's heartbeat rides along.

    squeue's exit code travels too: a controller that does not answer is not a finished job.
    """
    log = q(layout.log)
    state = (
        f"S=$(timeout {call_timeout} squeue -h -t all -j {q(job_id)} -o '%T|%r|%N' 2>&1); "
        'rc=$?; echo "rc=$rc"; printf "%s\\n" "$S" | head -n1; '
        f"mkdir -p {q(layout.run_dir + '/leases')} && touch {q(layout.lease)}; "
        if squeue
        else "echo rc=skip; echo; "
    )
    return (
        f'{state}echo "size=$(stat -c %s {log} 2>/dev/null || echo 0)"; echo @@LOG@@; '
        f"tail -c +{offset + 1} {log} 2>/dev/null | head -c {LOG_CHUNK}"
    )


def render_tail(layout: Layout, lines: int) -> str:
    """The end of a failed job's log, after the free space in the runs dir (a job on a full
    disk fails with an empty log)."""
    return (
        f"{render_free(layout.runs)}echo {TAIL_MARK}\ntail -n {lines} {q(layout.log)} 2>/dev/null"
    )


def render_cancel(job_id: str | None, layout: Layout, lease_ttl: float) -> str:
    """Stop the job, unless another run still watches it (a live lease), or stop the
    submission still on its way (it checks the marker under the lock).

    Two runs of one commit share one job (a branch and a merge-request pipeline): cancelling
    one must not kill the job the other waits for. A run that died without releasing its
    lease stops counting once its heartbeat is older than ``lease_ttl``.
    """
    lock = f"mkdir -p {q(layout.runs)} && exec 9>{q(layout.runs + '/.lock')} && flock 9"
    if not job_id:
        # The marker only while this run's staging dir is there: the submission that would
        # read it removes both. Without the dir there is nothing to stop (never staged, or
        # already submitted: scancel by name below), and a marker would be left behind.
        stage = q(layout.staging_dir)
        return (
            f"{lock} && {{ [ ! -d {stage} ] || touch {stage}.cancel; }} && "
            f'scancel --user="$USER" --name={q(JOB_PREFIX + layout.key)}'
        )
    leases = q(layout.run_dir + "/leases")
    return f"""\
{lock}
rm -f {q(layout.lease)}
live=$(find {leases} -type f ! -name {q(layout.nonce)} \
-newermt "@$(( $(date +%s) - {int(lease_ttl)} ))" 2>/dev/null | wc -l)
if [ "$live" -gt 0 ]; then
  echo "held=$live"
  exit 0
fi
scancel {q(job_id)}
"""


def render_release(layout: Layout, finished: bool) -> str:
    """Drop this run's lease; mark the run dir finished (prunable later) once the job ended."""
    mark = f" && touch {q(layout.run_dir + '/' + FINISHED_NAME)}" if finished else ""
    return f"rm -f {q(layout.lease)}{mark}"


def render_accounting(
    job_id: str, layout: Layout, sacct_format: str, call_timeout: int = SLURM_CALL_TIMEOUT
) -> str:
    return (
        f"timeout {call_timeout} sacct -j {q(job_id)} -n -P -o {sacct_format}; "
        'echo "@@RC@@=$?"; echo @@TIMES@@; '
        f"cat {q(layout.run_dir + '/' + TIMES_NAME)} 2>/dev/null"
    )


def render_stage_out(layout: Layout, outs: list[str]) -> str:
    """Check every out exists before packing (tar's own error names none of them)."""
    names = " ".join(q(o) for o in outs)
    return f"""\
cd {q(layout.run_dir)}
missing=""
for o in {names}; do [ -e "$o" ] || missing="$missing $o"; done
if [ -n "$missing" ]; then
  echo "missing:$missing" >&2
  exit 4
fi
tar -cf - -- {names}
"""
