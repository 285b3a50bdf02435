"""Render the report twice from the same data: Markdown for the PR comment, HTML for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from machinery.report.diff import DiffRow
from machinery.report.inputs import ReportInputs
from machinery.slurm.accounting import SHORT_JOB_S


@dataclass(frozen=True)
class ReportContext:
    inputs: ReportInputs
    baseline: str = ""
    metrics_diff: list[DiffRow] = field(default_factory=list)
    params_diff: list[DiffRow] = field(default_factory=list)
    image_dir_from_report: str = "../eval/plots/images"

    def summary_metrics(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.inputs.metrics.items() if not isinstance(v, dict)]

    def per_class_columns(self) -> list[str]:
        """Whatever columns the evaluate stage wrote, in first-seen order (a fork picks its own)."""
        columns: dict[str, None] = {}
        for row in self.inputs.per_class:
            columns.update(dict.fromkeys(row))
        return list(columns)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("machinery.report", "templates"),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    return env


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(context: ReportContext, template: str) -> str:
    return (
        _environment()
        .get_template(template)
        .render(
            ctx=context,
            card=context.inputs.card,
            generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            short_job_minutes=int(SHORT_JOB_S // 60),
        )
    )


def write_reports(context: ReportContext, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, html = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render(context, "report.md.j2"))
    html.write_text(render(context, "report.html.j2"))
    return md, html
