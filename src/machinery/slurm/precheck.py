"""The stage's own params check, run here before anything is staged or submitted.

A typo in ``params.yaml`` (``train.estimator: bogus``) must not cost a cluster job, a queue wait
and a stage-in before the stage reads its params. The machinery does not know the stage's params
(the border: it never imports the example), so the stage's ``dvc.yaml`` command names a cheap
check of its own (``mlops offload --check "python -m example.train --check" train -- …``) and
the offload runs it first.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from machinery.errors import UserError

CHECK_TIMEOUT_S = 120


def run_check(check: str, stage: str, root: Path) -> None:
    """Run ``check`` in ``root``; UserError with its last line (nothing submitted) if it fails."""
    try:
        argv = shlex.split(check)
    except ValueError as exc:
        raise UserError(f"--check {check!r}: {exc}") from None
    if not argv:
        raise UserError("--check: empty command")
    try:
        done = subprocess.run(
            argv, cwd=root, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S
        )
    except FileNotFoundError:
        raise UserError(f"stage {stage}: params check {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise UserError(
            f"stage {stage}: params check {check!r} took over {CHECK_TIMEOUT_S} s"
        ) from None
    if done.returncode == 0:
        return
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()] or ["no output"]
    last = lines[-1].removeprefix("error: ")
    # The check's other lines stay in the CI log; the one line says what to fix.
    sys.stderr.write("".join(f"  {ln}\n" for ln in lines[:-1]))
    raise UserError(f"stage {stage}: params check failed, nothing submitted: {last}")
