"""``python -m example.train --check``: the params check the offload runs before it submits."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.workspace import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _check(tmp_path: Path, estimator: str) -> subprocess.CompletedProcess[str]:
    params = {**PARAMS, "train": {**PARAMS["train"], "estimator": estimator}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, "-m", "example.train", "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_bogus_estimator_is_one_line_in_seconds_and_nothing_is_fitted(tmp_path: Path) -> None:
    started = time.monotonic()
    bad = _check(tmp_path, "bogus")
    assert time.monotonic() - started < 30
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: params.yaml: train.estimator: Input should be 'svc', 'logreg' or 'random_forest'"
    ]
    good = _check(tmp_path, "logreg")
    assert good.returncode == 0 and good.stdout == "train: params ok (logreg)\n", good.stderr
    assert not (tmp_path / "models").exists()  # checked, not trained (no data here either)
