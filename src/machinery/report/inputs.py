"""Everything the report shows, read from the files the stages wrote (never from their code)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.modelcard import CARD_FILENAME, ModelCard, read_card
from machinery.report.declared import DVC_YAML, PlotFile, declared


@dataclass(frozen=True)
class Image:
    name: str
    path: Path

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode()


@dataclass(frozen=True)
class SlurmJob:
    """One offloaded stage's ``reports/slurm/<stage>.json``."""

    stage: str
    record: dict[str, Any]

    @property
    def short(self) -> bool:
        """A cluster job the offload marked short: worth a note, it would be cheaper here."""
        offloaded = self.record.get("transport", "none") != "none"
        return offloaded and self.record.get("short_job") is True

    def summary(self) -> str:
        """One line for a reviewer; the full table goes in a collapsed block."""
        wanted = ("job id", "state", "run time", "stage efficiency E", "MaxRSS")
        rows = dict(self.rows())
        return " · ".join(f"{label} {rows[label]}" for label in wanted if label in rows)

    def rows(self) -> list[tuple[str, str]]:
        """The fields a reviewer reads, labelled and in units, in a fixed order. A GPU job whose
        utilisation Slurm did not report says so: unknown is never 0 %."""
        gpu_job = bool(self.record.get("gpus"))
        return [
            (label, show(self.record[key]) if self.record.get(key) is not None else "not reported")
            for key, label, show in _JOB_FIELDS
            if self.record.get(key) is not None or (gpu_job and key == "gpu_utilization")
        ]


@dataclass(frozen=True)
class PlotData:
    """A declared plot data file the report names (``dvc plots show`` draws it)."""

    plot: PlotFile
    points: int


@dataclass(frozen=True)
class ReportInputs:
    metrics: dict[str, Any]
    card: ModelCard
    per_class: list[dict[str, Any]]
    images: list[Image]
    slurm: list[SlurmJob] = field(default_factory=list)
    plot_data: list[PlotData] = field(default_factory=list)


def _text(value: Any) -> str:
    """A job field as words: ``yes``/``no`` and comma lists, never a Python repr."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f} %"


def _seconds(value: Any) -> str:
    return f"{float(value):.1f} s"


def _mebibytes(value: Any) -> str:
    return f"{int(value) / 2**20:.1f} MiB"


# (key in reports/slurm/<stage>.json, label, formatter)
_JOB_FIELDS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("transport", "transport", _text),
    ("source", "figures from", _text),
    ("job_id", "job id", _text),
    ("reattached", "reattached to a running job", _text),
    ("node", "node", _text),
    ("partition", "partition", _text),
    ("state", "state", _text),
    ("exit_code", "exit code", _text),
    ("queue_wait_s", "queue wait", _seconds),
    ("run_time_s", "run time", _seconds),
    ("time_limit_s", "time limit", _seconds),
    ("alloc_cpus", "allocated CPUs", _text),
    ("total_cpu_s", "CPU time (TotalCPU)", _seconds),
    ("cpu_efficiency", "CPU efficiency", _percent),
    ("max_rss_bytes", "MaxRSS", _mebibytes),
    ("alloc_mem_bytes", "allocated memory", _mebibytes),
    ("gpus", "GPUs", _text),
    ("gpu_utilization", "GPU utilisation", _percent),
    ("stage_efficiency", "stage efficiency E", _percent),
    ("note", "note", _text),
]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: not found (run the stage that writes it first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno})") from None


def _points(path: Path) -> int:
    """Rows of a plot data file (JSON list, or CSV/TSV lines under a header); 0 if unread."""
    if not path.is_file():
        return 0
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        return len(data) if isinstance(data, list) else 0
    return max(0, len(path.read_text().splitlines()) - 1)


def load_inputs(
    eval_dir: Path, model_dir: Path, slurm_dir: Path, dvc_yaml: Path = DVC_YAML
) -> ReportInputs:
    """Only the plot data files ``dvc_yaml`` declares are read: a leftover is never shown."""
    metrics = _read_json(eval_dir / "metrics.json")
    plots = declared(dvc_yaml)
    per_class_plot = plots.plot("per_class.json")
    per_class = (
        _read_json(per_class_plot.path)
        if per_class_plot is not None and per_class_plot.path.is_file()
        else []
    )
    plot_data = [
        PlotData(plot, _points(plot.path)) for plot in plots.plots if plot is not per_class_plot
    ]
    images_dir = eval_dir / "plots" / "images"
    images = [Image(p.stem.replace("_", " "), p) for p in sorted(images_dir.glob("*.png"))]
    slurm = [
        SlurmJob(p.stem, _read_json(p)) for p in sorted(slurm_dir.glob("*.json")) if p.is_file()
    ]
    return ReportInputs(
        metrics=metrics,
        card=read_card(model_dir / CARD_FILENAME),
        per_class=per_class,
        images=images,
        slurm=slurm,
        plot_data=plot_data,
    )
