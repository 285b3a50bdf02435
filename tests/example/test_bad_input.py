"""The example's stages on a bad ``params.yaml`` or a missing input: one line naming the cause."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.workspace import REPO, assert_one_line_error

GOOD = yaml.safe_load((REPO / "params.yaml").read_text())


def run_stage(cwd: Path, module: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [sys.executable, "-m", module], cwd=cwd, env=env, capture_output=True, text=True
    )


def write_params(cwd: Path, params: object) -> None:
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize(
    ("module", "mutate", "key"),
    [
        ("example.data", lambda p: p["data"].pop("seed"), "data.seed"),
        ("example.data", lambda p: p["data"].update(test_size="lots"), "data.test_size"),
        ("example.data", lambda p: p["data"].update(test_size=1.5), "data.test_size"),
        ("example.train", lambda p: p["train"].update(estimator="xgboost"), "train.estimator"),
        ("example.train", lambda p: p["train"]["svc"].update(C="abc"), "train.svc.C"),
        ("example.train", lambda p: p["train"]["svc"].update(C=-1), "train.svc.C"),
        (
            "example.train",
            lambda p: p["train"]["logreg"].update(max_iters=5),
            "train.logreg.max_iters",
        ),
        ("example.evaluate", lambda p: p["evaluate"].update(plot_dpi="high"), "evaluate.plot_dpi"),
    ],
)
def test_bad_param_names_the_key(
    tmp_path: Path, module: str, mutate: Callable[[dict[str, Any]], object], key: str
) -> None:
    params = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(params)
    write_params(tmp_path, params)
    assert_one_line_error(run_stage(tmp_path, module), key)


def test_train_without_prepared_data_names_the_path(tmp_path: Path) -> None:
    write_params(tmp_path, GOOD)
    assert_one_line_error(
        run_stage(tmp_path, "example.train"), "data/prepared/train.npz", "not found"
    )


def test_evaluate_refuses_a_model_that_does_not_match_its_card(tmp_path: Path) -> None:
    write_params(tmp_path, GOOD)
    assert run_stage(tmp_path, "example.data").returncode == 0
    assert run_stage(tmp_path, "example.train").returncode == 0
    model = tmp_path / "models/model.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"corrupted!")
    assert_one_line_error(run_stage(tmp_path, "example.evaluate"), "does not match the model card")
