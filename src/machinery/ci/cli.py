"""``mlops ci ...``: small steps of the CI jobs that are neither make targets nor other areas'."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from machinery.errors import exits_cleanly

app = typer.Typer(name="ci", help="CI steps: the experiment tag.", no_args_is_help=True)


@app.command()
@exits_cleanly
def tag(
    push: Annotated[bool, typer.Option(help="Push the tag to the forge.")] = False,
    quiet: Annotated[bool, typer.Option(help="Print only the tag name.")] = False,
) -> None:
    """Print HEAD's experiment tag, creating it first (exp-YYYYMMDD-HHMMSS-sha7) if HEAD has
    none. A rerun finds the same tag and changes nothing."""
    from machinery.ci.tagging import ensure_tag

    result = ensure_tag(push=push, env=os.environ)
    if quiet:
        typer.echo(result.tag)
        return
    how = "created" if result.created else "reused"
    where = ", pushed" if result.pushed else ""
    typer.echo(f"{result.tag} ({how} on {result.commit[:12]}{where})")
