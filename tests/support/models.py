"""Models for tests from the example's real stages (no hand-made ONNX)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.workspace import REPO


def train_example(workdir: Path, estimator: str) -> Path:
    """Run the example's data and train stages in ``workdir``; returns ``workdir``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["estimator"] = estimator
    # Small forests keep the session fast; the bytes still differ from logreg's.
    params["train"]["random_forest"].update(n_estimators=10, max_depth=6)
    workdir.mkdir(parents=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("example.data", "example.train"):
        subprocess.run([sys.executable, "-m", stage], cwd=workdir, check=True, capture_output=True)
    return workdir
