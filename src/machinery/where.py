"""``mlops where``: what the pipeline produced and what to try next (the end of ``make run``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

OUTPUTS = [
    ("model", Path("models/model.onnx")),
    ("model card", Path("models/model_card.json")),
    ("metrics", Path("eval/metrics.json")),
    ("report (Markdown)", Path("reports/report.md")),
    ("report (HTML, self-contained)", Path("reports/report.html")),
]

NEXT_STEPS = """next:
  make serve                               serve this model (FastAPI, /predict, /docs)
  dvc exp run -S train.estimator=logreg    try another estimator, then: dvc exp show
  make test                                run every test"""


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
    typer.echo(NEXT_STEPS)
