"""The stage definitions a fork test brings: its own ``dvc.yaml``, derived, never the one it
finds. The repository this runs in may itself be a fork whose ``dvc.yaml`` declares outputs of
its own (``eval/plots/roc.json``) or stages the swapped-in example has no module for; keeping
that file would make the fork test fail on the forker's outs instead of the template's code.

Each stage's code deps are the files its module imports (the closure ``tests/pipeline/
test_deps.py`` checks), so the derived file is right for whatever ``src/machinery`` holds; the
plots are what the swapped-in example's evaluate writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.pipeline.test_deps import import_closure

REPORT_PACKAGE = "src/machinery/report"  # with its templates: a folder dep, not its .py files
CLASSIFICATION_PLOTS: list[dict[str, Any]] = [
    {
        "eval/plots/confusion.json": {
            "template": "confusion",
            "x": "actual",
            "y": "predicted",
            "title": "Confusion matrix (test set)",
        }
    },
    {
        "eval/plots/per_class.json": {
            "template": "bar_horizontal",
            "x": "f1",
            "y": "label",
            "title": "Per-class F1 (test set)",
        }
    },
]
REGRESSION_PLOTS: list[dict[str, Any]] = [
    {
        "eval/plots/predictions.json": {
            "template": "scatter",
            "x": "actual",
            "y": "predicted",
            "title": "Predicted vs actual (test set)",
        }
    },
    {
        "eval/plots/residuals.json": {
            "template": "scatter",
            "x": "predicted",
            "y": "residual",
            "title": "Residuals (test set)",
        }
    },
]
PLOTS = {"wine": CLASSIFICATION_PLOTS, "diabetes": REGRESSION_PLOTS}


def _code(ws: Path, module: str) -> list[str]:
    files = sorted(str(p.relative_to(ws)) for p in import_closure(module, ws / "src"))
    if any(f.startswith(REPORT_PACKAGE + "/") for f in files):
        files = [f for f in files if not f.startswith(REPORT_PACKAGE + "/")] + [REPORT_PACKAGE]
    return files


def fork_pipeline(ws: Path, plots: list[dict[str, Any]]) -> dict[str, Any]:
    """data → train → evaluate → report for the example now in ``ws/src/example``."""
    plot_files = [next(iter(entry)) for entry in plots]
    return {
        "stages": {
            "data": {
                "cmd": "python -m example.data",
                "deps": _code(ws, "example.data"),
                "params": ["data"],
                "outs": ["data/prepared"],
            },
            "train": {
                "cmd": "mlops offload train -- python -m example.train",
                "deps": ["data/prepared", *_code(ws, "example.train")],
                "params": ["train"],
                "outs": ["models/model.onnx", "models/model_card.json", "reports/slurm/train.json"],
            },
            "evaluate": {
                "cmd": "python -m example.evaluate",
                "deps": [
                    "data/prepared",
                    "models/model.onnx",
                    "models/model_card.json",
                    *_code(ws, "example.evaluate"),
                ],
                "params": ["evaluate"],
                "metrics": ["eval/metrics.json"],
                "plots": plots,
                "outs": ["eval/plots/images"],
            },
            "report": {
                "cmd": "mlops report",
                "deps": [
                    "eval/metrics.json",
                    *plot_files,
                    "eval/plots/images",
                    "models/model_card.json",
                    "reports/slurm/train.json",
                    *_code(ws, "machinery.report.cli"),
                ],
                "params": ["report"],
                "outs": ["reports/report.md", "reports/report.html"],
            },
        },
        "plots": ["eval/plots/images"],
    }


def write_fork_pipeline(ws: Path, name: str) -> None:
    """``ws/dvc.yaml`` for the ``name`` fork, replacing whatever the repository had."""
    (ws / "dvc.yaml").write_text(yaml.safe_dump(fork_pipeline(ws, PLOTS[name]), sort_keys=False))
