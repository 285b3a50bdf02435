"""The job's command inside a container: ``ch-run`` (Charliecloud) or ``apptainer exec``.

Both drop the host's environment and get what the stage needs by name, bind the run dir and
start in it; the image is never written (ch-run mounts a directory image read-only unless
``-w``; a SIF is read-only). Rendered as text here so ``mlops offload --dry-run`` and the unit
tests can read it. This module imports nothing from the rest of the offload: ``script`` calls it.
"""

from __future__ import annotations

import shlex

# The variables the job script exports for the stage (script.render_job_script): a container
# that starts from an empty environment gets exactly these, by name, with their values.
PASSED_ALWAYS = ("PYTHONPATH", "PYTHONUNBUFFERED")
IMAGES_DIR = "images"  # <workdir>/images/<image id>: one staged Charliecloud image per digest


def q(value: str) -> str:
    return shlex.quote(value)


def passed_names(env_vars: dict[str, str] | None) -> list[str]:
    return [*PASSED_ALWAYS, *(env_vars or {})]


def apptainer_command(
    image: str, args: list[str], run: str, passed: list[str], command: str
) -> str:
    """``apptainer exec``: --cleanenv drops the host's environment (untested here: Apptainer
    is not installable on the machine the tests run on; the flags mirror ``ch_run_command``)."""
    extra = " ".join(q(a) for a in args)
    envs = " ".join(f'--env {k}="${k}"' for k in passed)
    return (
        f"apptainer exec --cleanenv {envs} --bind {q(run)} "
        f"--pwd {q(run)} {extra + ' ' if extra else ''}{q(image)} {command}"
    )


def ch_run_command(
    image_dir: str, args: list[str], runs: str, run: str, passed: list[str], command: str
) -> str:
    """``ch-run`` on a staged directory image.

    ``--unset-env='*'`` first (the node's environment, including a runner's secrets if a site
    exports them, stays out), then ``--set-env`` with no value: the image's own variables
    (``/ch/environment``, written by ``ch-convert`` from the image's ENV lines, so its PATH
    finds the image's Python), then the stage's variables by name. ``--env-no-expand``: the
    shell has already expanded the values; ch-run must not expand a ``$`` in them again.

    The bind is the runs dir, not the run dir: ch-run cannot make a mount point inside a
    read-only image, so staging made ``runs`` in the image (its path is the same for every
    run), and this run's dir exists under it.
    """
    extra = " ".join(q(a) for a in args)
    envs = " ".join(f'--set-env={k}="${k}"' for k in passed)
    return (
        f"ch-run --unset-env='*' --env-no-expand --set-env {envs} --bind={q(runs)} "
        f"--cd={q(run)} {extra + ' ' if extra else ''}{q(image_dir)} -- {command}"
    )
