"""``mlops report``: render the pipeline report (the DVC ``report`` stage's command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict

from machinery.errors import exits_cleanly
from machinery.params import load_section
from machinery.report.diff import metrics_diff, params_diff
from machinery.report.inputs import load_inputs
from machinery.report.render import ReportContext, write_reports


class ReportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baseline: str = ""


@exits_cleanly
def report(
    baseline: Annotated[
        str | None,
        typer.Option(help="Git revision to diff against (default: params.yaml report.baseline)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where report.md and report.html go.")] = Path(
        "reports"
    ),
) -> None:
    """Render reports/report.md and a self-contained reports/report.html."""
    rev = baseline if baseline is not None else load_section("report", ReportParams).baseline
    context = ReportContext(
        inputs=load_inputs(Path("eval"), Path("models"), out / "slurm"),
        baseline=rev,
        metrics_diff=metrics_diff(rev) if rev else [],
        params_diff=params_diff(rev) if rev else [],
    )
    md, html = write_reports(context, out)
    typer.echo(f"report: {md} and {html}")
