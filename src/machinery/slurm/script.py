"""The shell the offload runs on the cluster: the sbatch script and the small login-node scripts.

Everything that runs remotely is rendered here as text, so it can be read in a test or printed
with ``mlops offload --dry-run`` without a cluster.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from machinery.slurm import container
from machinery.slurm.settings import EnvSettings, JobSettings, SlurmSettings

LOG_NAME = "job.log"
SCRIPT_NAME = "job.sh"
SUBMIT_NAME = ".mlops-submit.sh"
TIMES_NAME = ".mlops-times"
ENV_NAME = ".mlops-env.sh"
CACHED_NAME = ".mlops-cached"  # "<sha256> <path>" of deps taken from the cluster's cache
CACHE_ADD_NAME = ".mlops-cache-add"  # "<sha256> <path>" of deps to keep in that cache
FINISHED_NAME = ".finished"  # the offload saw the job end: the run dir may be pruned later
JOB_PREFIX = "mlops-"
# How long one squeue or sacct call may take before we call the controller silent.
SLURM_CALL_TIMEOUT = 10
LOG_CHUNK = 4 << 20  # bytes of job.log per poll


def replaceable(state: str) -> bool:
    """A finished job a rerun replaces: every final state but COMPLETED (and none known)."""
    from machinery.slurm.accounting import TERMINAL

    return not state or (state in TERMINAL and state != "COMPLETED")


def q(value: str) -> str:
    return shlex.quote(value)


def remote_path(path: str) -> str:
    """Shell text for a cluster path; ``~/`` becomes ``$HOME`` (expanded by the remote shell)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + q(path[2:])
    return q(path)


@dataclass(frozen=True)
class Layout:
    """Absolute paths of one run on the cluster (known once the login node told us $HOME)."""

    workdir: str
    key: str
    nonce: str

    @property
    def runs(self) -> str:
        return f"{self.workdir}/runs"

    @property
    def run_dir(self) -> str:
        return f"{self.runs}/{self.key}"

    @property
    def staging_dir(self) -> str:
        return f"{self.runs}/.{self.key}.{self.nonce}"

    @property
    def log(self) -> str:
        return f"{self.run_dir}/{LOG_NAME}"

    @property
    def lease(self) -> str:
        return f"{self.run_dir}/leases/{self.nonce}"

    @property
    def cache(self) -> str:
        return f"{self.workdir}/cache"

    def venv(self, env: EnvSettings, lock_bytes: bytes) -> str:
        return f"{self.workdir}/venvs/{venv_hash(env, lock_bytes)}"


def venv_hash(env: EnvSettings, lock_bytes: bytes) -> str:
    """A venv is keyed by the lock file (and the interpreter and uv that build it)."""
    digest = hashlib.sha256(lock_bytes)
    digest.update(f"\0{env.python}\0{env.uv_version}".encode())
    return digest.hexdigest()[:16]


def sbatch_lines(job: JobSettings, name: str, layout: Layout) -> list[str]:
    opts = [
        f"--job-name={name}",
        f"--output={layout.log}",
        # A requeued job (NODE_FAIL, preemption, scontrol requeue) appends instead of truncating
        # the log the offload is reading.
        "--open-mode=append",
        f"--chdir={layout.run_dir}",
        *resource_options(job),
    ]
    return [f"#SBATCH {o}" for o in opts]


def resource_options(job: JobSettings) -> list[str]:
    """The job's resource requests (``mlops doctor`` asks ``sbatch --test-only`` about them)."""
    opts = [
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={job.cpus}",
        f"--time={job.time}",
    ]
    if job.partition:
        opts.append(f"--partition={job.partition}")
    if job.mem:
        opts.append(f"--mem={job.mem}")
    if job.gpus:
        opts.append(f"--gpus={job.gpus}")
    if job.account:
        opts.append(f"--account={job.account}")
    if job.qos:
        opts.append(f"--qos={job.qos}")
    opts.extend(e if e.startswith("--") else f"--{e}" for e in job.extra)
    return opts


def render_job_script(
    settings: SlurmSettings,
    stage: str,
    layout: Layout,
    cmd: list[str],
    venv: str | None,
    env_vars: dict[str, str] | None = None,
    image_dir: str | None = None,
) -> str:
    """The sbatch script: resources, then setup lines, then the stage command in its env."""
    env = settings.env
    run = layout.run_dir
    lines = [
        "#!/bin/bash -l",
        *sbatch_lines(settings.job, JOB_PREFIX + layout.key, layout),
        f"# Written by `mlops offload {stage}`; identity {layout.key}.",
        "set -eo pipefail",
        f"cd {q(run)}",
        # The code snapshot is importable without installing it (compute nodes have no network).
        f"export PYTHONPATH={q(run + '/src')}:{q(run)}",
        # Output reaches the log (and the CI log) as it is written, not when the job ends.
        "export PYTHONUNBUFFERED=1",
        *(f"export {k}={q(v)}" for k, v in (env_vars or {}).items()),
        # The outs come back with the modes a local run gives (the run dir itself is 0700).
        "umask 022",
        *env.setup,
    ]
    command = shlex.join(cmd)
    # A container starts from an empty environment: what the stage needs is passed by name.
    passed = container.passed_names(env_vars)
    if env.kind == "apptainer":
        command = container.apptainer_command(env.image, env.apptainer_args, run, passed, command)
    elif env.kind == "charliecloud":
        image = image_dir or f"{layout.workdir}/{container.IMAGES_DIR}/<image id>"
        command = container.ch_run_command(
            image, env.ch_run_args, layout.runs, run, passed, command
        )
    elif env.kind == "venv" and venv is not None:
        lines.append(f"source {q(venv + '/bin/activate')}")
    # Start and end as the node saw them (the offload's overhead breakdown needs more than
    # sacct's whole seconds), the attempt, and the exit code for clusters without sacct.
    lines += timed([command])
    return "\n".join(lines) + "\n"


def timed(body: list[str]) -> list[str]:
    """``body`` between the lines that write ``TIMES_NAME`` (start, attempt, end, exit code:
    what ``remote.render_accounting`` reads back), exiting with the body's code. The same file
    for a single job and every task of a sweep's array."""
    return [
        f'echo "start=$(date +%s.%N)" > {TIMES_NAME}',
        f'echo "restarts=${{SLURM_RESTART_COUNT:-0}}" >> {TIMES_NAME}',
        "set +e",
        *body,
        "rc=$?",
        f'echo "end=$(date +%s.%N)" >> {TIMES_NAME}',
        f'echo "rc=$rc" >> {TIMES_NAME}',
        "exit $rc",
    ]


def render_prune(layout: Layout, days: float) -> str:
    """Remove run dirs of finished runs, retired and abandoned staging dirs, and cached deps no
    run uses, once older than ``days`` (run under the runs lock)."""
    if days <= 0:
        return ""
    minutes = max(int(days * 1440), 1)
    runs, cache = q(layout.runs), q(layout.cache)
    return f"""\
for m in {runs}/.*.cancel; do  # a cancel marker whose staging dir is gone stops nothing
  if [ -e "$m" ] && [ ! -d "${{m%.cancel}}" ]; then rm -f "$m"; fi
done
for d in {runs}/* {runs}/.*; do
  [ -d "$d" ] || continue
  n=$(basename "$d")
  case "$n" in
    .|..) continue;;
    .*|*.*) f="$d";;  # an abandoned staging dir, or the run dir of a replaced job
    *) f="$d/{FINISHED_NAME}"; [ -e "$f" ] || continue;;
  esac
  if [ -n "$(find "$f" -maxdepth 0 -mmin +{minutes})" ]; then
    chmod -R u+w "$d" 2>/dev/null || true
    rm -rf "$d" || true  # pruning never fails a submission
  fi
done
[ -d {cache} ] && find {cache} -type f -links 1 -mmin +{minutes} -delete 2>/dev/null || true
"""


def render_link_cached(layout: Layout) -> str:
    """Deps the cluster already holds come from its cache (hard links, read-only); large new
    ones join it."""
    stage, cache = q(layout.staging_dir), q(layout.cache)
    return f"""\
if [ -f {stage}/{CACHED_NAME} ] || [ -f {stage}/{CACHE_ADD_NAME} ]; then
  mkdir -p {cache}
  while read -r h p; do
    mkdir -p "$(dirname {stage}/"$p")"
    ln -f {cache}/"$h" {stage}/"$p" 2>/dev/null || cp {cache}/"$h" {stage}/"$p"
  done < <(cat {stage}/{CACHED_NAME} 2>/dev/null || true)
  while read -r h p; do
    chmod a-w {stage}/"$p"
    ln -f {stage}/"$p" {cache}/"$h.$$" 2>/dev/null && mv -f {cache}/"$h.$$" {cache}/"$h" || true
  done < <(cat {stage}/{CACHE_ADD_NAME} 2>/dev/null || true)
  rm -f {stage}/{CACHED_NAME} {stage}/{CACHE_ADD_NAME}
fi
"""


def render_submit(
    layout: Layout, env_setup: str, retire: str | None, prune_days: float = 0.0
) -> str:
    """Runs on the login node after the snapshot landed in the staging dir.

    Under one lock per workdir: a run dir that already has a job id wins (a concurrent or
    retried offload attaches to it); otherwise the staging dir becomes the run dir and is
    submitted. A cancel marker left by an interrupted offload stops a late submission. Either
    way this run takes a lease on the job (see ``render_cancel``).
    """
    run, stage = q(layout.run_dir), q(layout.staging_dir)
    lease = f"mkdir -p {run}/leases && touch {q(layout.lease)}"
    retire_block = ""
    if retire:
        retire_block = (
            f'if [ -s {run}/jobid ] && [ "$(cat {run}/jobid)" = {q(retire)} ]; then\n'
            f"  chmod -R u+w {q(layout.run_dir + '.' + retire)} 2>/dev/null || true\n"
            f"  rm -rf {q(layout.run_dir + '.' + retire)}\n"
            f"  mv {run} {q(layout.run_dir + '.' + retire)}\n"
            "fi\n"
        )
    return f"""\
set -eo pipefail
umask 077
{render_link_cached(layout)}echo "t_env_start=$(date +%s.%N)"
{env_setup}echo "t_env_end=$(date +%s.%N)"
exec 9>{q(layout.runs + '/.lock')}
flock 9
{render_prune(layout, prune_days)}if [ -e {stage}.cancel ]; then
  rm -rf {stage} {stage}.cancel
  echo "cancelled"
  exit 0
fi
{retire_block}if [ -s {run}/jobid ]; then
  rm -rf {stage}
  {lease}
  echo "attach=$(cat {run}/jobid)"
  exit 0
fi
rm -rf {run}
mv {stage} {run}
echo "t_submit=$(date +%s.%N)"
if ! J=$(sbatch --parsable {run}/{SCRIPT_NAME} 2>{run}/sbatch.err); then
  cat {run}/sbatch.err >&2
  rm -rf {run}
  exit 3
fi
J=${{J%%;*}}
echo "$J" > {run}/jobid
{lease}
echo "submitted=$J"
"""
