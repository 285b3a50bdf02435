"""``mlops report``: render the pipeline report (the DVC ``report`` stage's command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from machinery.errors import exits_cleanly
from machinery.params import load_section
from machinery.report.diff import against
from machinery.report.directions import ReportParams
from machinery.report.inputs import load_inputs
from machinery.report.model_change import model_change
from machinery.report.render import ReportContext, write_reports


@exits_cleanly
def report(
    baseline: Annotated[
        str,
        typer.Option(
            help="Git revision to diff metrics and params against (local use; the PR comment"
            " diffs against the target branch itself). Default: no diff."
        ),
    ] = "",
    out: Annotated[Path, typer.Option(help="Where report.md and report.html go.")] = Path(
        "reports"
    ),
) -> None:
    """Render reports/report.md and a self-contained reports/report.html."""
    from machinery.efficiency.render import build

    metrics, params = against(baseline) if baseline else ([], [])
    inputs = load_inputs(Path("eval"), Path("models"), out / "slurm")
    context = ReportContext(
        inputs=inputs,
        # Job records only: report.md is a DVC output (machinery.efficiency.render says why).
        efficiency=build({j.stage: j.record for j in inputs.slurm}, Path.cwd(), measured=False),
        settings=load_section("report", ReportParams),
        baseline=baseline,
        metrics_diff=metrics,
        params_diff=params,
        model_change=model_change(baseline, inputs.card) if baseline else None,
    )
    md, html = write_reports(context, out)
    typer.echo(f"report: {md} and {html}")
