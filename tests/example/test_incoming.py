"""The example's data stage adds the labelled rows under ``data/incoming/`` (what a fork's
``dvc import-url`` of a labelled S3 prefix fills, docs/retraining.md) to the training split;
a malformed file is one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.example.test_bad_input import run_stage, write_params
from tests.support.workspace import REPO, assert_one_line_error

GOOD = yaml.safe_load((REPO / "params.yaml").read_text())


def prepared(cwd: Path) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    proc = run_stage(cwd, "example.data")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((cwd / "data/prepared/data_version.json").read_text())
    with np.load(cwd / "data/prepared/train.npz") as arrays:
        return summary, arrays["X"], arrays["y"]


def test_rows_under_data_incoming_join_the_training_split(tmp_path: Path) -> None:
    write_params(tmp_path, GOOD)
    (tmp_path / "data/incoming").mkdir(parents=True)
    before, _, _ = prepared(tmp_path)
    assert "n_incoming" not in before  # no rows: the committed default, unchanged output
    new = np.full((3, 64), 7.0)
    lines = ["# two sevens and a one, from feedback"]
    lines += [",".join(["7"] * 64) + ",7"] * 2 + [",".join(["7"] * 64) + ",1"]
    (tmp_path / "data/incoming/2026-12-05.csv").write_text("\n".join(lines) + "\n")
    after, X, y = prepared(tmp_path)
    assert after["n_incoming"] == 3
    assert after["n_train"] == before["n_train"] + 3
    assert after["n_test"] == before["n_test"]
    assert after["data_version"] != before["data_version"]
    np.testing.assert_array_equal(X[-3:], new)
    assert y[-3:].tolist() == [7, 7, 1]


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (",".join(["1"] * 10) + ",3", "11 columns per row"),
        (",".join(["1"] * 64) + ",12", "labels must be the digits 0..9"),
        (",".join(["99"] * 64) + ",3", "pixel values must be within 0..16"),
        ("a,b,c", "not comma-separated numbers"),
    ],
)
def test_a_malformed_incoming_file_is_one_line_naming_it(
    tmp_path: Path, row: str, needle: str
) -> None:
    write_params(tmp_path, GOOD)
    (tmp_path / "data/incoming").mkdir(parents=True)
    (tmp_path / "data/incoming/bad.csv").write_text(row + "\n")
    proc = run_stage(tmp_path, "example.data")
    assert_one_line_error(proc, "data/incoming/bad.csv", needle)
