"""``mlops measure STAGE -- CMD`` (a local stage's ``cmd`` goes through it) and ``mlops
efficiency`` (the efficiency table and advice of this workspace's last run, as Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from machinery.errors import exits_cleanly

# Everything after the stage name belongs to CMD, options included (`-- python -m ...`).
MEASURE_OPTIONS = {"context_settings": {"allow_interspersed_args": False}, "no_args_is_help": True}


@exits_cleanly
def measure(
    stage: Annotated[str, typer.Argument(help="The stage's name in dvc.yaml.")],
    cmd: Annotated[list[str], typer.Argument(help="The stage's command.")],
) -> None:
    """Run CMD here and record its wall time, CPU time and peak RSS in reports/stages/."""
    from machinery.efficiency.measure import run_measured
    from machinery.errors import UserError

    if cmd and cmd[0] == "--":  # click keeps the separator when interspersed args are off
        cmd = cmd[1:]
    if not cmd:
        raise UserError("no command: mlops measure STAGE -- CMD...")
    code = run_measured(stage, cmd, Path.cwd())
    if code != 0:
        raise typer.Exit(code if code > 0 else 128 - code)


@exits_cleanly
def efficiency() -> None:
    """Print every stage's efficiency (formula (1)) and the advice, from reports/."""
    from machinery.efficiency.render import workspace_section

    typer.echo(workspace_section(Path.cwd(), measured=True), nl=False)
