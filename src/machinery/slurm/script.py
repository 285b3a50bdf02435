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
JOB_PREFIX = "mlops-"
# Terminal states whose job a retry replaces instead of reattaching to.
RETRYABLE = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL")


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
        *env.setup,
    ]
    command = shlex.join(cmd)
    if env.kind == "apptainer":
        args = " ".join(q(a) for a in env.apptainer_args)
        command = (
            f'apptainer exec --cleanenv --env PYTHONPATH="$PYTHONPATH" --bind {q(run)} '
            f"--pwd {q(run)} {args + ' ' if args else ''}{q(env.image)} {command}"
        )
    elif env.kind == "venv" and venv is not None:
        lines.append(f"source {q(venv + '/bin/activate')}")
    # Start and end as the node saw them: the offload's overhead breakdown needs more than
    # sacct's whole seconds.
    lines += [
        f'echo "start=$(date +%s.%N)" > {TIMES_NAME}',
        "set +e",
        command,
        "rc=$?",
        f'echo "end=$(date +%s.%N)" >> {TIMES_NAME}',
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"


def render_env_setup(env: EnvSettings, layout: Layout, lock_name: str, venv: str) -> str:
    """Build the venv once per lock hash on the login node, under a lock, marked when complete."""
    py = q(env.python)
    tools = f"{layout.workdir}/tools/uv-{env.uv_version}"
    lock = q(f"{layout.staging_dir}/{lock_name}")
    # The setup lines (e.g. `module load python`) give the build the job's interpreter.
    setup = "".join(f"    {line}\n" for line in env.setup)
    return f"""\
V={q(venv)}
if [ ! -f "$V/.ready" ]; then
{setup}
  mkdir -p {q(layout.workdir + '/venvs')}
  exec 8>"$V.lock"
  flock 8
  if [ ! -f "$V/.ready" ]; then
    echo "building the job environment in $V" >&2
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
    touch "$V/.ready"
    echo "env=built"
  fi
  exec 8>&-
fi
"""


def render_submit(layout: Layout, env_setup: str, retire: str | None) -> str:
    """Runs on the login node after the snapshot landed in the staging dir.

    Under one lock per workdir: a run dir that already has a job id wins (a concurrent or
    retried offload attaches to it); otherwise the staging dir becomes the run dir and is
    submitted. A cancel marker left by an interrupted offload stops a late submission.
    """
    run, stage = q(layout.run_dir), q(layout.staging_dir)
    retire_block = ""
    if retire:
        retire_block = (
            f'if [ -s {run}/jobid ] && [ "$(cat {run}/jobid)" = {q(retire)} ]; then\n'
            f"  rm -rf {q(layout.run_dir + '.' + retire)}\n"
            f"  mv {run} {q(layout.run_dir + '.' + retire)}\n"
            "fi\n"
        )
    return f"""\
set -eo pipefail
umask 077
echo "t_env_start=$(date +%s.%N)"
{env_setup}echo "t_env_end=$(date +%s.%N)"
exec 9>{q(layout.runs + '/.lock')}
flock 9
if [ -e {stage}.cancel ]; then
  rm -rf {stage} {stage}.cancel
  echo "cancelled"
  exit 0
fi
{retire_block}if [ -s {run}/jobid ]; then
  rm -rf {stage}
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
echo "submitted=$J"
"""


def render_probe(workdir: str, key: str) -> str:
    """One round trip: $HOME, and the job already submitted under this identity, if any."""
    run = f"{remote_path(workdir)}/runs/{q(key)}"
    return f"""\
echo "home=$HOME"
if [ -s {run}/jobid ]; then
  J=$(cat {run}/jobid)
  echo "job=$J"
  echo "squeue=$(squeue -h -t all -j "$J" -o '%T|%j' 2>/dev/null | head -n1)"
  echo "sacct=$(sacct -n -X -P -j "$J" -o State,JobName 2>/dev/null | head -n1)"
fi
"""


def render_stage_in(layout: Layout) -> str:
    """Unpack the snapshot (tar on stdin) into a private staging dir, then submit."""
    stage = q(layout.staging_dir)
    return (
        f"umask 077 && mkdir -p {q(layout.runs)} && rm -rf {stage} && mkdir {stage} && "
        f"tar -x -C {stage} && "
        f"{{ bash {stage}/{SUBMIT_NAME} || {{ rc=$?; rm -rf {stage}; exit $rc; }}; }}"
    )


def render_poll(job_id: str, layout: Layout, offset: int) -> str:
    """Live state from squeue (sacct lags), then the log from ``offset`` on, in one call.

    squeue's exit code travels too: a controller that does not answer is not a finished job.
    """
    return (
        f"S=$(squeue -h -t all -j {q(job_id)} -o '%T|%r|%N' 2>&1); echo \"rc=$?\"; "
        'printf "%s\\n" "$S" | head -n1; echo @@LOG@@; '
        f"tail -c +{offset + 1} {q(layout.log)} 2>/dev/null | head -c 1048576"
    )


def render_cancel(job_id: str | None, layout: Layout) -> str:
    """Stop the job, or the submission still on its way (it checks the marker under the lock)."""
    if job_id:
        return f"scancel {q(job_id)}"
    return (
        f"mkdir -p {q(layout.runs)} && exec 9>{q(layout.runs + '/.lock')} && flock 9 && "
        f"touch {q(layout.staging_dir)}.cancel && "
        f'scancel --user="$USER" --name={q(JOB_PREFIX + layout.key)}'
    )


def render_accounting(job_id: str, layout: Layout, sacct_format: str) -> str:
    return (
        f"sacct -j {q(job_id)} -n -P -o {sacct_format}; echo @@TIMES@@; "
        f"cat {q(layout.run_dir + '/' + TIMES_NAME)} 2>/dev/null"
    )


def render_stage_out(layout: Layout, outs: list[str]) -> str:
    return f"cd {q(layout.run_dir)} && tar -cf - -- {' '.join(q(o) for o in outs)}"
