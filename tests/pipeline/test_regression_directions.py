"""A regressor's metrics are judged without a ``report.directions`` entry: the usual names
have a known direction, a count has none."""

from __future__ import annotations

import pytest

from machinery.report.directions import direction, judge


@pytest.mark.parametrize(
    ("metric", "way"),
    [
        ("rmse", "lower"),
        ("mae", "lower"),
        ("mse", "lower"),
        ("rmsle", "lower"),
        ("mape", "lower"),
        ("medae", "lower"),
        ("max_error", "lower"),
        ("r2", "higher"),
        ("r2_score", "higher"),
        ("explained_variance", "higher"),
        ("n_test", "none"),
    ],
)
def test_regression_metric_directions_are_known(metric: str, way: str) -> None:
    assert direction(metric, {}) == way


def test_a_higher_rmse_is_worse_and_a_higher_r2_better() -> None:
    assert judge(5.0, direction("rmse", {})) == "worse"
    assert judge(0.1, direction("r2", {})) == "better"
