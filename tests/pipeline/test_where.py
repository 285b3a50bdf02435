"""``mlops where`` (the end of ``make run``): its experiment hint comes from ``params.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml

from machinery.where import next_steps


def test_hint_names_a_real_param_of_this_params_yaml(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"data": {"seed": 1}, "train": {"seed": 2, "depth": {"max": 4}}})
    )
    hint = next_steps(params)
    assert "dvc exp run -S train.depth.max=VALUE" in hint
    assert "logreg" not in hint and "estimator" not in hint


def test_hint_is_general_without_params(tmp_path: Path) -> None:
    assert "dvc exp run -S SECTION.KEY=VALUE" in next_steps(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    assert "dvc exp run -S SECTION.KEY=VALUE" in next_steps(tmp_path / "params.yaml")
