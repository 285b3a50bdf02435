"""``mlops doctor``: check every CI setting against the real service it names."""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer

from machinery.doctor.model import Check, Row


def all_checks() -> list[Check]:
    from machinery.doctor import forge, image, placeholders, s3, slurm

    return [*s3.CHECKS, *slurm.CHECKS, *forge.CHECKS, *image.CHECKS, *placeholders.CHECKS]


def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checklist as JSON (for machines).")
    ] = False,
) -> None:
    """Check the CI variables against the real S3, Slurm, forge and image registry (docs/doctor.md).

    Reads the same variables the CI jobs read, writes nothing it does not remove, and prints one
    line per check: ✓ fine, ✗ wrong (with the fix), – not configured. Exit code 1 on any ✗.
    """
    import logging

    from machinery.doctor.report import as_json as render_json
    from machinery.doctor.report import table
    from machinery.doctor.runner import redact, run_checks, secrets_of

    # Libraries' own loggers (paramiko, botocore) would print beside the table.
    logging.getLogger().addHandler(logging.NullHandler())
    env = dict(os.environ)
    started = time.monotonic()
    rows = run_checks(all_checks(), env)
    seconds = time.monotonic() - started
    hidden = secrets_of(env)
    rows = [
        Row(r.name, r.status, redact(r.detail, hidden), redact(r.fix, hidden), r.seconds)
        for r in rows
    ]
    text = render_json(rows, seconds) if as_json else table(rows, seconds)
    typer.echo(text)
    # A check still running past its budget is a daemon thread: it does not hold the exit.
    raise typer.Exit(1 if any(r.status == "fail" for r in rows) else 0)
