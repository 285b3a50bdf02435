"""Render the report from one context: Markdown (reports/report.md and the PR comment) and a
self-contained HTML page for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from machinery.modelcard import is_dirty, short_commit
from machinery.report import markdown
from machinery.report.diff import DiffRow
from machinery.report.directions import Judgement, ReportParams, direction, judge
from machinery.report.inputs import Image, ReportInputs
from machinery.report.model_change import ModelChange, one_sided, two_sided
from machinery.slurm.accounting import SHORT_JOB_S


@dataclass(frozen=True)
class ReportContext:
    inputs: ReportInputs
    settings: ReportParams = field(default_factory=ReportParams)
    baseline: str = ""  # what the diff is against, as a reader knows it ("main")
    # Every row of the one diff, unchanged ones included: the verdict and the tables read it.
    metrics_diff: list[DiffRow] = field(default_factory=list)
    params_diff: list[DiffRow] = field(default_factory=list)
    baseline_error: str = ""  # why the diff against ``baseline`` is missing
    # The PR comment only: image file name -> absolute URL on the forge (None: report.md, which
    # names the plots and leaves them to report.html: a relative path has nothing behind it in a
    # PR, and forges strip data: URIs).
    image_urls: dict[str, str] | None = None
    report_url: str = ""
    marker: str = ""
    # machinery.efficiency.render.Section: Table 1, formula (1), advice (None: no figures)
    efficiency: Any = None
    # Another model than the baseline's (name, task or labels): its figures are not judged.
    model_change: ModelChange | None = None

    def summary_metrics(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.inputs.metrics.items() if not isinstance(v, dict)]

    def changed_metrics(self) -> list[DiffRow]:
        return [row for row in self.metrics_diff if row.changed]

    def changed_params(self) -> list[DiffRow]:
        return [row for row in self.params_diff if row.changed]

    def judge(self, row: DiffRow) -> Judgement:
        return judge(row.change, direction(row.key, self.settings.directions))

    def headline(self) -> str | None:
        """The metric the verdict line is about: params' report.headline, else the first one
        with a known direction, else the first one."""
        metrics = dict(self.summary_metrics())
        if self.settings.headline in metrics:
            return self.settings.headline
        ranked = [k for k in metrics if direction(k, self.settings.directions) != "none"]
        candidates = ranked or list(metrics)
        return candidates[0] if candidates else None

    def verdict(self) -> str:
        key = self.headline()
        if key is None:
            return ""
        new = self.inputs.metrics[key]
        if not self.baseline:
            return f"{key} {_num(new)}"
        if self.baseline_error:
            return f"{key} {_num(new)} (no diff against {self.baseline}: see below)"
        if self.model_change:
            return (
                f"The model changed against {self.baseline} ({self.model_change.fields()}):"
                f" {key} {_num(new)} is its own figure, not compared with the old model's"
            )
        row = next((r for r in self.metrics_diff if r.key == key), None)
        if row is None or row.old is None:
            return f"{key} {_num(new)} (new: not in {self.baseline})"
        if not row.changed:
            return f"{key} {_num(new)} (unchanged) vs {self.baseline}"
        word = {"better": ", better", "worse": ", worse", "same": ", unchanged"}.get(
            self.judge(row), ""
        )
        return (
            f"{key} {_num(row.old)} → {_num(new)} ({_signed(row.change)}{word}) vs {self.baseline}"
        )

    def card_params(self) -> list[tuple[str, Any]]:
        """The card's params flattened to dotted keys (a nested dict is not a table cell)."""
        out: list[tuple[str, Any]] = []

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for key, inner in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
            else:
                out.append((prefix, value))

        walk("", self.inputs.card.params)
        return out

    def per_class_columns(self) -> list[str]:
        """Whatever columns the evaluate stage wrote, in first-seen order (a fork picks its own)."""
        columns: dict[str, None] = {}
        for row in self.inputs.per_class:
            columns.update(dict.fromkeys(row))
        return list(columns)

    def per_class_align(self) -> str:
        """The per-class table's delimiter row: numeric columns right-aligned."""
        cells = []
        for column in self.per_class_columns():
            values = [row.get(column) for row in self.inputs.per_class]
            numeric = all(_is_number(v) for v in values if v is not None)
            cells.append("---:" if numeric else "---")
        return "|" + "|".join(cells) + "|"

    def image_url(self, image: Image) -> str:
        return (self.image_urls or {}).get(image.path.name, "")

    @property
    def dirty(self) -> bool:
        return is_dirty(self.inputs.card.code_commit)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("machinery.report", "templates"),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=_num,
        signed=_signed,
        cell=_cell,
        md=markdown.text,
        code=markdown.code,
        shape=_shape,
        commit=short_commit,
        two_sided=two_sided,
        one_sided=one_sided,
    )
    return env


def _num(value: Any) -> str:
    """A value as a reader writes it: never a Python repr (``None``, ``False``, ``[None, 13]``)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_num(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_num(v)}" for k, v in value.items())
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _signed(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return "+" + _num(value)
    return _num(value)


def _cell(value: Any) -> str:
    """A value as literal text, safe inside a GFM table cell (no markup, no ``|``, no newline)."""
    return markdown.text(_num(value))


def _shape(shape: list[int | None]) -> str:
    """``[None, 13]`` as ``N × 13``: N is the batch axis, any size."""
    return " × ".join("N" if dim is None else str(dim) for dim in shape)


def _generated(context: ReportContext) -> str:
    """When this report was made, for the PR comment and a local diff only: the ``report``
    stage's own output carries no clock time, so the same inputs give the same bytes and a fresh
    clone's ``make run`` reproduces the committed ``dvc.lock``."""
    if not (context.marker or context.baseline):
        return ""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(context: ReportContext, template: str) -> str:
    return (
        _environment()
        .get_template(template)
        .render(
            ctx=context,
            card=context.inputs.card,
            generated=_generated(context),
            short_job_minutes=int(SHORT_JOB_S // 60),
        )
    )


def write_reports(context: ReportContext, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, html = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render(context, "report.md.j2"))
    html.write_text(render(context, "report.html.j2"))
    return md, html
