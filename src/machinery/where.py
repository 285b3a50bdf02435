"""``mlops where``: what the pipeline produced and what to try next (the end of ``make run``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

OUTPUTS = [
    ("model", Path("models/model.onnx")),
    ("model card", Path("models/model_card.json")),
    ("metrics", Path("eval/metrics.json")),
    ("report (Markdown)", Path("reports/report.md")),
    ("report (HTML, self-contained)", Path("reports/report.html")),
]

PARAMS = Path("params.yaml")


def first_param(params: Any, prefix: str = "") -> str | None:
    """The first leaf of ``params.yaml`` (the ``train`` section first), as ``section.key``."""
    if not isinstance(params, dict):
        return prefix or None
    keys = sorted(params, key=lambda k: (k != "train", k == "seed")) if not prefix else params
    for key in keys:
        found = first_param(params[key], f"{prefix}.{key}" if prefix else str(key))
        if found and not found.endswith(".seed"):
            return found
    return None


def next_steps(params_path: Path = PARAMS) -> str:
    try:
        param = first_param(yaml.safe_load(params_path.read_text()))
    except (OSError, yaml.YAMLError):
        param = None
    experiment = f"dvc exp run -S {param or 'SECTION.KEY'}=VALUE"
    return "\n".join(
        [
            "next:",
            f"  {'make serve':<40} serve this model (FastAPI, /predict, /docs)",
            f"  {experiment:<40} an experiment with another param value; then: dvc exp show",
            f"  {'make test':<40} run every test",
        ]
    )


def where() -> None:
    """Print where the model, the metrics and the report are, and the next command to try."""
    for label, path in OUTPUTS:
        state = str(path.resolve()) if path.exists() else "(missing: run `make run`)"
        typer.echo(f"{label:<31} {state}")
    metrics_path = Path("eval/metrics.json")
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        summary = ", ".join(
            f"{k} {v}" for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n_test"
        )
        typer.echo(f"{'test metrics':<31} {summary}")
    typer.echo(next_steps())
