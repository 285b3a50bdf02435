"""The job's Python environment on the cluster: a venv built once per lock hash on the login
node (with its own time limit), then made read-only and checked against a manifest before use.

A same-account job can still undo read-only on purpose; the manifest catches a job that installs
into the shared venv or edits it. Protected branches get their own cluster account (docs/slurm.md).
"""

from __future__ import annotations

from machinery.slurm.script import ENV_NAME, Layout, q
from machinery.slurm.settings import EnvSettings


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
