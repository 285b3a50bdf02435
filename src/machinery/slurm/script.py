"""The shell the offload runs on the cluster: the sbatch script and the small login-node scripts.

Everything that runs remotely is rendered here as text, so it can be read in a test or printed
with ``mlops offload --dry-run`` without a cluster.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

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
    return [f"#SBATCH {o}" for o in opts]


def render_job_script(
    settings: SlurmSettings,
    stage: str,
    layout: Layout,
    cmd: list[str],
    venv: str | None,
    env_vars: dict[str, str] | None = None,
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
    if env.kind == "apptainer":
        args = " ".join(q(a) for a in env.apptainer_args)
        # --cleanenv drops the host's environment: pass what the stage needs by name.
        passed = ["PYTHONPATH", "PYTHONUNBUFFERED", *(env_vars or {})]
        envs = " ".join(f'--env {k}="${k}"' for k in passed)
        command = (
            f"apptainer exec --cleanenv {envs} --bind {q(run)} "
            f"--pwd {q(run)} {args + ' ' if args else ''}{q(env.image)} {command}"
        )
    elif env.kind == "venv" and venv is not None:
        lines.append(f"source {q(venv + '/bin/activate')}")
    # Start and end as the node saw them (the offload's overhead breakdown needs more than
    # sacct's whole seconds), the attempt, and the exit code for clusters without sacct.
    lines += [
        f'echo "start=$(date +%s.%N)" > {TIMES_NAME}',
        f'echo "restarts=${{SLURM_RESTART_COUNT:-0}}" >> {TIMES_NAME}',
        "set +e",
        command,
        "rc=$?",
        f'echo "end=$(date +%s.%N)" >> {TIMES_NAME}',
        f'echo "rc=$rc" >> {TIMES_NAME}',
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"


def render_env_build(env: EnvSettings, layout: Layout, lock_name: str, venv: str) -> str:
    """Build the venv once per lock hash on the login node, under a lock; when complete, make
    it read-only and record a manifest of its files (checked before every use)."""
    py = q(env.python)
    tools = f"{layout.workdir}/tools/uv-{env.uv_version}"
    lock = q(f"{layout.staging_dir}/{lock_name}")
    # The setup lines (e.g. `module load python`) give the build the job's interpreter.
    setup = "".join(f"{line}\n" for line in env.setup)
    return f"""\
set -eo pipefail
V={q(venv)}
{setup}mkdir -p {q(layout.workdir + '/venvs')}
exec 8>"$V.lock"
flock 8
if [ ! -f "$V/.ready" ]; then
  echo "building the job environment in $V" >&2
  [ -d "$V" ] && chmod -R u+w "$V"
  rm -rf "$V"
  UV=$(command -v uv || true)
  # The login node's own CA store (site proxies), not only uv's bundled roots.
  export UV_SYSTEM_CERTS=1
  if [ -z "$UV" ]; then
    U={q(tools)}
    if [ ! -x "$U/bin/uv" ]; then
      rm -rf "$U"
      {py} -m venv "$U"
      "$U/bin/pip" install -q --disable-pip-version-check {q('uv==' + env.uv_version)}
    fi
    UV="$U/bin/uv"
  fi
  "$UV" venv -q --python {py} "$V"
  "$UV" pip sync -q --compile-bytecode --python "$V/bin/python" {lock} >&2
  chmod -R a-w "$V"
  {VENV_MANIFEST} > "$V.manifest"
  echo "env=built"
  chmod u+w "$V"; touch "$V/.ready"; chmod a-w "$V" "$V/.ready"
fi
"""


# Every file's path, size, mtime and mode: cheap even for a multi-GB CUDA venv, and it catches
# a job that installs into, or edits, the shared venv. Not a defence against a job that forges
# mtimes on purpose: that is what separate accounts for protected branches are for.
VENV_MANIFEST = (
    'find "$V" -mindepth 1 -path "$V/.ready" -prune -o -printf \'%P %s %T@ %m %l\\n\' '
    "| LC_ALL=C sort | sha256sum | cut -d' ' -f1"
)


def render_env_setup(env: EnvSettings, layout: Layout, venv: str) -> str:
    """The submit script's part: build (with its own time limit) if needed, then verify."""
    limit = int(env.build_timeout)
    build = q(f"{layout.staging_dir}/{ENV_NAME}")
    return f"""\
V={q(venv)}
if [ ! -f "$V/.ready" ]; then
  set +e
  timeout -k 10 {limit} bash --noprofile --norc {build}
  rc=$?
  set -e
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "error: building the job environment took more than {limit} s (env.build_timeout)" >&2
    exit 5
  fi
  [ $rc = 0 ] || exit $rc
fi
if [ "$({VENV_MANIFEST})" != "$(cat "$V.manifest" 2>/dev/null)" ]; then
  echo "error: the job environment $V changed after it was built (manifest mismatch); \
remove it to rebuild" >&2
  exit 5
fi
"""


def render_prune(layout: Layout, days: float) -> str:
    """Remove run dirs of finished runs, retired and abandoned staging dirs, and cached deps no
    run uses, once older than ``days`` (run under the runs lock)."""
    if days <= 0:
        return ""
    minutes = max(int(days * 1440), 1)
    runs, cache = q(layout.runs), q(layout.cache)
    return f"""\
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


def render_stage_in(layout: Layout) -> str:
    """Unpack the snapshot (tar on stdin) into a private staging dir, then submit. The staging
    dir goes on any failure (a full quota stays full otherwise); on success it became the run
    dir or was dropped for a concurrent run's job."""
    stage = q(layout.staging_dir)
    return (
        "umask 077\n"
        f"trap 'rm -rf {stage}' EXIT\n"
        "trap 'exit 129' HUP INT TERM PIPE\n"
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
    return f"tail -n {lines} {q(layout.log)} 2>/dev/null"


def render_cancel(job_id: str | None, layout: Layout, lease_ttl: float) -> str:
    """Stop the job, unless another run still watches it (a live lease), or stop the
    submission still on its way (it checks the marker under the lock).

    Two runs of one commit share one job (a branch and a merge-request pipeline): cancelling
    one must not kill the job the other waits for. A run that died without releasing its
    lease stops counting once its heartbeat is older than ``lease_ttl``.
    """
    lock = f"mkdir -p {q(layout.runs)} && exec 9>{q(layout.runs + '/.lock')} && flock 9"
    if not job_id:
        return (
            f"{lock} && touch {q(layout.staging_dir)}.cancel && "
            f'scancel --user="$USER" --name={q(JOB_PREFIX + layout.key)}'
        )
    leases = q(layout.run_dir + "/leases")
    return f"""\
{lock}
rm -f {q(layout.lease)}
live=$(find {leases} -type f -newermt "@$(( $(date +%s) - {int(lease_ttl)} ))" 2>/dev/null \
| wc -l)
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
