"""The efficiency section of the report and the PR comment: Table 1, formula (1), the advice.

Built from ``reports/slurm/<stage>.json`` (a cluster job's sacct record, a DVC output) and, where
the figures may change from run to run, ``reports/stages/<stage>.json`` (stages run here). The
``report`` stage's own report.md is a DVC output that a fresh clone must reproduce byte for byte,
so it shows the cluster jobs only; the PR comment and ``mlops efficiency`` show every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import escape

from machinery.efficiency.advice import Flag, advise
from machinery.efficiency.measure import read_measurements
from machinery.efficiency.settings import EfficiencySettings
from machinery.efficiency.table import StageRow, pipeline_efficiency, stage_rows
from machinery.report import markdown

HEADER = ("stage", "where", "E_i", "E_i^cpu", "p^cpu", "E_i^gpu", "p^gpu", "time")
NOT_REPORTED = "not reported"


def _frac(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _weight(value: float | None) -> str:
    if value is None:
        return "–"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Section:
    rows: list[StageRow]
    weights: EfficiencySettings
    advice: dict[str, list[Flag]] = field(default_factory=dict)
    where_from: str = ""  # one sentence: which files the table is built from

    def cells(self, row: StageRow) -> list[str]:
        if not row.gpus:
            gpu = "–"
        else:
            gpu = NOT_REPORTED if row.gpu_eff is None else _frac(row.gpu_eff)
        return [
            row.stage,
            row.where,
            _frac(row.efficiency(self.weights)),
            _frac(row.cpu_eff),
            _weight(row.p_cpu(self.weights)),
            gpu,
            _weight(row.p_gpu(self.weights)),
            "–" if row.time_s is None else f"{row.time_s:.1f} s",
        ]

    def total(self) -> str:
        value, left_out = pipeline_efficiency(self.rows, self.weights)
        w = self.weights
        text = (
            f"Pipeline E = {_frac(value)} (formula (1): E = Σ p·c·Δt ÷ Σ p·Δt; p = "
            f"{_weight(w.cpu_weight)} per CPU core, {_weight(w.gpu_weight)} per GPU)"
        )
        if left_out:
            text += f"; left out, a figure unknown: {', '.join(left_out)}"
        return text + "."

    def flag_lines(self) -> list[tuple[str, Flag]]:
        return [(stage, flag) for stage, flags in self.advice.items() for flag in flags]

    def markdown(self) -> str:
        md = markdown.text
        lines = [
            "### Efficiency",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += ["| " + " | ".join(md(c) for c in self.cells(r)) + " |" for r in self.rows]
        lines += ["", f"**{md(self.total())}**", ""]
        if self.where_from:
            lines += [md(self.where_from), ""]
        flags = self.flag_lines()
        if flags:
            lines += ["#### Advice", ""]
            lines += [
                f"- {markdown.code(stage)}: {md(flag.finding)}; in slurm.yaml set"
                f" {markdown.code(flag.suggestion())}"
                + (f" under {markdown.code(flag.section + ':')}" if flag.section else "")
                for stage, flag in flags
            ]
            lines.append("")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in self.cells(r)) + "</tr>"
            for r in self.rows
        )
        parts = [
            "<h2>Efficiency</h2>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
            f"<p><strong>{escape(self.total())}</strong></p>",
        ]
        if self.where_from:
            parts.append(f"<p>{escape(self.where_from)}</p>")
        flags = self.flag_lines()
        if flags:
            items = "".join(
                f"<li><code>{escape(s)}</code>: {escape(f.finding)}; in slurm.yaml set"
                f" <code>{escape(f.suggestion())}</code>"
                + (f" under <code>{escape(f.section)}:</code>" if f.section else "")
                + "</li>"
                for s, f in flags
            )
            parts.append(f"<h3>Advice</h3><ul>{items}</ul>")
        return "\n".join(parts) + "\n"


def _stage_order(root: Path) -> list[str]:
    from machinery.files import load_yaml

    path = root / "dvc.yaml"
    try:
        stages = load_yaml(path).get("stages") or {} if path.is_file() else {}
    except Exception:  # noqa: BLE001 - the order is cosmetic; a broken dvc.yaml fails elsewhere
        return []
    return [str(s) for s in stages]


def _settings() -> EfficiencySettings:
    from machinery.slurm.settings import load_settings

    return load_settings().efficiency


def build(records: dict[str, dict[str, Any]], root: Path, *, measured: bool) -> Section | None:
    """The section for these job records (and, with ``measured``, the measurements here);
    ``None`` when no stage has figures."""
    measurements = read_measurements(root) if measured else {}
    rows = stage_rows(records, measurements, _stage_order(root))
    if not rows:
        return None
    settings = _settings()
    advice = {stage: advise(rec, settings) for stage, rec in records.items()}
    if measured:
        where = (
            "Cluster jobs: sacct, from reports/slurm/<stage>.json; stages run here: their last"
            " run's wall time, CPU time and peak RSS, from reports/stages/<stage>.json (not"
            " tracked by DVC)."
        )
    else:
        where = (
            "Cluster jobs only, from reports/slurm/<stage>.json. Stages run here are measured"
            " on every run (reports/stages/, not a DVC output): the PR comment and"
            " `mlops efficiency` show them too."
        )
    return Section(rows, settings, {s: f for s, f in advice.items() if f}, where)


def workspace_section(root: Path, *, measured: bool) -> str:
    import json

    records = {}
    for path in sorted((root / "reports" / "slurm").glob("*.json")):
        try:
            records[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    section = build(records, root, measured=measured)
    return section.markdown() if section else "No stage has efficiency figures yet.\n"
