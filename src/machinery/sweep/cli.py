"""``mlops sweep STAGE -S key=v1,v2 ... --max-parallel K``: a grid of points, each a DVC
experiment; ``mlops sweep --best [METRIC]`` names the best one (docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from machinery.errors import exits_cleanly


@exits_cleanly
def sweep(
    stages: Annotated[
        Optional[list[str]],  # noqa: UP007 - typer reads the annotation at run time
        typer.Argument(help="stage(s) to sweep; the stages after them down to metrics run too"),
    ] = None,
    set_: Annotated[
        Optional[list[str]],  # noqa: UP007
        typer.Option("-S", "--set-param", help="KEY=V1,V2,...: one grid axis (repeatable)"),
    ] = None,
    max_parallel: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--max-parallel", "-j", min=1, help="points running at once (array %K)"),
    ] = None,
    max_points: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--max-points", min=1, help="refuse grids larger than this (default 64)"),
    ] = None,
    transport: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option(help="none | local | ssh (default: slurm.yaml, MLOPS_SLURM_TRANSPORT)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="print the points and the array script; submit nothing"),
    ] = False,
    from_params: Annotated[
        bool,
        typer.Option("--from-params", help="stages and grid from params.yaml's sweep: section"),
    ] = False,
    if_present: Annotated[
        bool,
        typer.Option("--if-present", help="with --from-params: no sweep: section, nothing to do"),
    ] = False,
    allow_failed: Annotated[
        bool,
        typer.Option(
            "--allow-failed-points",
            help="exit 0 when some points failed (CI: the comment lists them); not when all did",
        ),
    ] = False,
    best: Annotated[
        bool,
        typer.Option("--best", help="print the best experiment of the last sweep, then exit"),
    ] = False,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="then dvc exp push the experiments to the project's git remote (CI keeps them)",
        ),
    ] = False,
) -> None:
    """Run a parameter grid: one Slurm job array (or here, at most K at a time); every point
    becomes a DVC experiment and reports/sweep.json indexes them."""
    from machinery.sweep.run import (
        SweepFailed,
        SweepRequest,
        best_point,
        has_section,
        run_sweep,
    )

    root = Path.cwd()
    if best:
        metric = stages[0] if stages else None
        typer.echo(best_point(root, metric).name)
        return
    if from_params and if_present and not has_section(root):
        typer.echo("[sweep] params.yaml has no sweep: section: nothing to sweep", err=True)
        return
    request = SweepRequest.build(
        root,
        stages=stages or [],
        options=set_ or [],
        max_parallel=max_parallel,
        max_points=max_points,
        from_params=from_params,
    )
    record = run_sweep(root, request, transport=transport, dry_run=dry_run)
    if record is not None and push:
        from machinery.sweep.keep import keep

        keep(root, record)
    if record is None or not record.failed:
        return
    if allow_failed and len(record.failed) < len(record.points):
        return
    if record.failed:
        names = ", ".join(f"{p.name} ({p.state})" for p in record.failed)
        raise SweepFailed(f"{len(record.failed)} of {len(record.points)} points failed: {names}")
